"""The mfa service's command API, called by the gateway: one route per enrollment command, and one
route that takes a batch of the admin commands (a bulk action's) with a result per command."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfaplane_contracts import commands as c
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.mfa_events import (
    AccessOutcome,
    ApplicationSignIn,
    EnrollmentDays,
    EnrollmentPromptDismissed,
    Scope,
    SystemAccessDecided,
    TOTPVerified,
    enrollment_days,
    enrollment_id,
)
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.event_store import AppendResult, Cause, ConcurrencyConflict
from mfaplane_eventing.problems import Problem, conflict_body, rejected_body
from mfaplane_eventing.request_context import CauseDep
from mfaplane_eventing.service import RuntimeDep
from mfaplane_mfa import enrollment
from mfaplane_mfa.enrollment_commands import EnrollmentCommands
from mfaplane_mfa.setup_material import setup_material

router = APIRouter(prefix="/enrollments/{scope}/{principal_id}")
batch_router = APIRouter(prefix="/enrollments")
BATCH_PATH = f"{batch_router.prefix}/batch"
MAX_BATCH = 1000
BATCH_ITEM_BYTES = 256  # a batch item's JSON is under 200 bytes
MAX_BATCH_BYTES = MAX_BATCH * BATCH_ITEM_BYTES  # the batch route's own request size limit
BATCH_COMMANDS: dict[str, type[c.RequireMFA | c.ExtendEnrollment | c.ResetMFA]] = {
    "require": c.RequireMFA, "extend": c.ExtendEnrollment, "reset": c.ResetMFA}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequireBody(Body):
    enrollment_days: int | None = enrollment_days(default=c.DEFAULT_ENROLLMENT_DAYS)


class PeriodBody(Body):
    enrollment_days: int = EnrollmentDays


class AppCodeBody(Body):
    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$", description="a code from the app")


class SetupBody(Body):
    account: str = Field(min_length=1, max_length=320, description="shown in the authenticator app (the email)")


class CodeBody(Body):
    code: str = c.TotpCode


class AccessBody(Body):
    system_id: uuid.UUID
    mfa_enabled: bool
    code: str | None = Field(default=None, min_length=6, max_length=32, pattern=c.CODE_PATTERN)
    login_name: str | None = Field(default=None, max_length=32)
    source: str | None = Field(default=None, max_length=255)


class AccessDecision(CommandReceipt):
    decision: AccessOutcome
    reason: str


class SetupResponse(CommandReceipt):
    key_text: str
    otpauth_uri: str
    qr_svg: str
    qr_png_base64: str


class ConfirmResponse(CommandReceipt):
    recovery_codes: list[str] = Field(description="shown once; store them safely")


class VerifyResponse(CommandReceipt):
    method: Literal["totp", "recovery_code"]
    recovery_codes_left: int


class DismissResponse(CommandReceipt):
    days_remaining: int
    deadline: datetime | None


class BatchCommand(Body):
    command_id: uuid.UUID = Field(description="the command's own idempotency key")
    action: Literal["require", "extend", "reset"]
    scope: Scope
    principal_id: uuid.UUID
    enrollment_days: int | None = enrollment_days(default=c.DEFAULT_ENROLLMENT_DAYS)

    @model_validator(mode="after")
    def _days_where_needed(self) -> BatchCommand:
        if self.enrollment_days is None and self.action in ("extend", "reset"):
            raise ValueError("extend and reset need enrollment_days")
        return self


class BatchBody(Body):
    commands: list[BatchCommand] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    command_id: uuid.UUID
    receipt: CommandReceipt | None = None
    problem: Problem | None = Field(default=None, description="why this command was refused; the others stand")


class BatchResponse(BaseModel):
    results: list[BatchResult]


class EnrollmentView(BaseModel):
    scope: Scope
    principal_id: uuid.UUID
    status: MFAStatus
    required: bool
    set_up: bool
    deadline: datetime | None
    days_remaining: int | None
    throttled_until: datetime | None
    locked: bool
    recovery_codes_left: int


async def commands(request: Request) -> EnrollmentCommands:
    return request.app.state.enrollment_commands


CommandsDep = Annotated[EnrollmentCommands, Depends(commands)]


def _fields(scope: Scope, principal_id: uuid.UUID, cause: Cause) -> dict:
    return {"scope": scope, "principal_id": principal_id, "actor": cause.actor, "command_id": cause.command_id,
            "correlation_id": cause.correlation_id}


def _receipt(scope: Scope, principal_id: uuid.UUID, result: AppendResult) -> dict:
    return {"aggregate_id": enrollment_id(scope, principal_id), "version": result.version,
            "event_ids": [e.event_id for e in result.events], "duplicate": result.duplicate}


async def _receipt_of(run: EnrollmentCommands, command: c.EnrollmentCommand, cause: Cause) -> CommandReceipt:
    result, _ = await run(command, cause)
    return CommandReceipt(**_receipt(command.scope, command.principal_id, result))


@router.post("/require")
async def require(scope: Scope, principal_id: uuid.UUID, body: RequireBody, cause: CauseDep,
                  run: CommandsDep) -> CommandReceipt:
    fields = _fields(scope, principal_id, cause)
    return await _receipt_of(run, c.RequireMFA(**fields, enrollment_days=body.enrollment_days), cause)


@router.post("/remove-requirement")
async def remove_requirement(scope: Scope, principal_id: uuid.UUID, cause: CauseDep,
                             run: CommandsDep) -> CommandReceipt:
    return await _receipt_of(run, c.RemoveMFARequirement(**_fields(scope, principal_id, cause)), cause)


@router.post("/extend")
async def extend(scope: Scope, principal_id: uuid.UUID, body: PeriodBody, cause: CauseDep,
                 run: CommandsDep) -> CommandReceipt:
    fields = _fields(scope, principal_id, cause)
    return await _receipt_of(run, c.ExtendEnrollment(**fields, enrollment_days=body.enrollment_days), cause)


@router.post("/reset")
async def reset(scope: Scope, principal_id: uuid.UUID, body: PeriodBody, cause: CauseDep,
                run: CommandsDep) -> CommandReceipt:
    fields = _fields(scope, principal_id, cause)
    return await _receipt_of(run, c.ResetMFA(**fields, enrollment_days=body.enrollment_days), cause)


@router.post("/begin-setup")
async def begin_setup(scope: Scope, principal_id: uuid.UUID, body: SetupBody, cause: CauseDep, run: CommandsDep,
                      runtime: RuntimeDep) -> SetupResponse:
    result, decision = await run(c.BeginTOTPSetup(**_fields(scope, principal_id, cause)), cause)
    secret = decision.new_secret if decision else await run.issued_secret(result)
    assert secret is not None  # a setup begun anew issues a key
    material = setup_material(secret, account=body.account, issuer=runtime.settings.totp_issuer)
    return SetupResponse(**_receipt(scope, principal_id, result), key_text=material.key_text,
                         otpauth_uri=material.otpauth_uri, qr_svg=material.qr_svg,
                         qr_png_base64=base64.b64encode(material.qr_png).decode())


@router.post("/confirm-setup")
async def confirm_setup(scope: Scope, principal_id: uuid.UUID, body: CodeBody, cause: CauseDep,
                        run: CommandsDep) -> ConfirmResponse:
    result, decision = await run(c.ConfirmTOTPSetup(**_fields(scope, principal_id, cause), code=body.code), cause)
    codes = list(decision.recovery_codes.codes) if decision and decision.recovery_codes else []
    return ConfirmResponse(**_receipt(scope, principal_id, result), recovery_codes=codes)


@router.post("/verify")
async def verify(scope: Scope, principal_id: uuid.UUID, body: CodeBody, cause: CauseDep,
                 run: CommandsDep) -> VerifyResponse:
    result, decision = await run(c.VerifyTOTP(**_fields(scope, principal_id, cause), code=body.code), cause)
    assert decision is not None  # a repeated command id was refused above: a verification is never replayed
    verified = decision.events[-1]
    assert isinstance(verified, TOTPVerified)  # a verification refused was raised by `run`
    return VerifyResponse(**_receipt(scope, principal_id, result), method=verified.method,
                          recovery_codes_left=verified.recovery_codes_left)


@router.post("/regenerate-recovery-codes")
async def regenerate_recovery_codes(scope: Scope, principal_id: uuid.UUID, body: AppCodeBody, cause: CauseDep,
                                    run: CommandsDep) -> ConfirmResponse:
    command = c.RegenerateRecoveryCodes(**_fields(scope, principal_id, cause), code=body.code)
    result, decision = await run(command, cause)
    assert decision is not None and decision.recovery_codes is not None  # never replayed, never without codes
    return ConfirmResponse(**_receipt(scope, principal_id, result), recovery_codes=list(decision.recovery_codes.codes))


@router.post("/access")
async def decide_access(scope: Scope, principal_id: uuid.UUID, body: AccessBody, cause: CauseDep,
                        run: CommandsDep) -> AccessDecision:
    command = c.DecideSystemAccess(**_fields(scope, principal_id, cause), **body.model_dump())
    result, decision = await run(command, cause)
    assert decision is not None  # a repeated command id was refused above: a decision is never replayed
    decided = decision.events[-1]
    assert isinstance(decided, SystemAccessDecided)
    return AccessDecision(**_receipt(scope, principal_id, result), decision=decided.outcome, reason=decided.reason)


@router.post("/application-sign-in")
async def record_application_sign_in(scope: Scope, principal_id: uuid.UUID, body: ApplicationSignIn,
                                     cause: CauseDep, run: CommandsDep) -> CommandReceipt:
    command = c.RecordApplicationSignIn(**_fields(scope, principal_id, cause), **body.model_dump())
    return await _receipt_of(run, command, cause)


@router.post("/dismiss-prompt")
async def dismiss_prompt(scope: Scope, principal_id: uuid.UUID, cause: CauseDep, run: CommandsDep) -> DismissResponse:
    result, _ = await run(c.DismissEnrollmentPrompt(**_fields(scope, principal_id, cause)), cause)
    dismissed = [body for e in result.events if isinstance(body := e.body(), EnrollmentPromptDismissed)]
    state = await run.state(enrollment_id(scope, principal_id))
    return DismissResponse(**_receipt(scope, principal_id, result),
                           days_remaining=dismissed[-1].days_remaining if dismissed else 0, deadline=state.deadline)


@router.get("")
async def view(scope: Scope, principal_id: uuid.UUID, runtime: RuntimeDep, run: CommandsDep) -> EnrollmentView:
    state = await run.state(enrollment_id(scope, principal_id))
    now = runtime.clock.now()
    status = enrollment.status(state, now)
    return EnrollmentView(
        scope=scope, principal_id=principal_id, status=status, required=state.required, set_up=state.set_up,
        deadline=state.deadline,
        days_remaining=enrollment.days_remaining(state.deadline, now)
        if status == "enrolling" and state.deadline is not None else None,
        throttled_until=state.paused_until if state.paused_until and state.paused_until > now else None,
        locked=state.locked, recovery_codes_left=state.recovery_codes_issued - len(state.used_recovery_codes),
    )


@batch_router.post(BATCH_PATH.removeprefix(batch_router.prefix))
async def run_batch(body: BatchBody, cause: CauseDep, run: CommandsDep) -> BatchResponse:
    """Each command is decided and appended on its own (one refused or conflicting command leaves the
    others applied), in a few transactions for the whole batch."""
    causes = [Cause(cause.actor, cause.correlation_id, item.command_id) for item in body.commands]
    commands = [_batch_command(item, item_cause) for item, item_cause in zip(body.commands, causes, strict=True)]
    outcomes = await run.batch(list(zip(commands, causes, strict=True)))
    return BatchResponse(results=[_batch_result(command, outcome)
                                  for command, outcome in zip(commands, outcomes, strict=True)])


def _batch_command(item: BatchCommand, cause: Cause) -> c.EnrollmentCommand:
    return BATCH_COMMANDS[item.action](**_fields(item.scope, item.principal_id, cause),
                                       enrollment_days=item.enrollment_days)


def _batch_result(command: c.EnrollmentCommand, outcome: AppendResult | Exception) -> BatchResult:
    if isinstance(outcome, AppendResult):
        return BatchResult(command_id=command.command_id,
                           receipt=CommandReceipt(**_receipt(command.scope, command.principal_id, outcome)))
    if isinstance(outcome, ConcurrencyConflict):
        body = conflict_body()
    elif isinstance(outcome, Rejected):
        body = rejected_body(outcome)
    else:
        raise outcome
    return BatchResult(command_id=command.command_id, problem=Problem(**body))
