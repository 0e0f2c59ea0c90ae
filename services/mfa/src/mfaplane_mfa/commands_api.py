"""The mfa service's command API, called by the gateway: the routes of the contract's endpoints
(contracts `mfa_api.py`), each turning a request into its command."""

from __future__ import annotations

import base64
import functools
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from mfaplane_chassis import endpoints
from mfaplane_chassis.problems import conflict_body, rejected_body
from mfaplane_chassis.request_context import CauseDep
from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import commands as c
from mfaplane_contracts import mfa_api as api
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.endpoints import Problem
from mfaplane_contracts.mfa_events import (
    ApplicationSignIn,
    EnrollmentPromptDismissed,
    Scope,
    SystemAccessDecided,
    TOTPVerified,
    enrollment_id,
)
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.event_store import AppendResult, Cause, ConcurrencyConflict
from mfaplane_mfa import enrollment
from mfaplane_mfa.enrollment_commands import EnrollmentCommands
from mfaplane_mfa.setup_material import setup_material

router = APIRouter()
MAX_BATCH_BYTES = api.MAX_BATCH * 256  # the batch route's own request size limit (an item's JSON is under 200 bytes)
BATCH_COMMANDS: dict[str, type[c.RequireMFA | c.ExtendEnrollment | c.ResetMFA]] = {
    "require": c.RequireMFA, "extend": c.ExtendEnrollment, "reset": c.ResetMFA}
serve = functools.partial(endpoints.serve, router)


async def commands(request: Request) -> EnrollmentCommands:
    return request.app.state.enrollment_commands


CommandsDep = Annotated[EnrollmentCommands, Depends(commands)]


def _fields(scope: Scope, principal_id: uuid.UUID, cause: Cause) -> dict[str, Any]:
    return {"scope": scope, "principal_id": principal_id, "actor": cause.actor, "command_id": cause.command_id,
            "correlation_id": cause.correlation_id}


def _receipt(scope: Scope, principal_id: uuid.UUID, result: AppendResult) -> dict[str, Any]:
    return {"aggregate_id": enrollment_id(scope, principal_id), "version": result.version,
            "event_ids": [e.event_id for e in result.events], "duplicate": result.duplicate}


async def _receipt_of(run: EnrollmentCommands, command: c.EnrollmentCommand, cause: Cause) -> CommandReceipt:
    result, _ = await run(command, cause)
    return CommandReceipt(**_receipt(command.scope, command.principal_id, result))


@serve(api.REQUIRE)
async def require(scope: Scope, principal_id: uuid.UUID, body: c.RequirePeriod, cause: CauseDep,
                  run: CommandsDep) -> CommandReceipt:
    return await _receipt_of(run, c.RequireMFA(**_fields(scope, principal_id, cause), **dict(body)), cause)


@serve(api.REMOVE_REQUIREMENT)
async def remove_requirement(scope: Scope, principal_id: uuid.UUID, cause: CauseDep,
                             run: CommandsDep) -> CommandReceipt:
    return await _receipt_of(run, c.RemoveMFARequirement(**_fields(scope, principal_id, cause)), cause)


@serve(api.EXTEND)
async def extend(scope: Scope, principal_id: uuid.UUID, body: c.Period, cause: CauseDep,
                 run: CommandsDep) -> CommandReceipt:
    return await _receipt_of(run, c.ExtendEnrollment(**_fields(scope, principal_id, cause), **dict(body)), cause)


@serve(api.RESET)
async def reset(scope: Scope, principal_id: uuid.UUID, body: c.Period, cause: CauseDep,
                run: CommandsDep) -> CommandReceipt:
    return await _receipt_of(run, c.ResetMFA(**_fields(scope, principal_id, cause), **dict(body)), cause)


@serve(api.BEGIN_SETUP)
async def begin_setup(scope: Scope, principal_id: uuid.UUID, body: api.Setup, cause: CauseDep, run: CommandsDep,
                      runtime: RuntimeDep) -> api.SetupMaterial:
    result, decision = await run(c.BeginTOTPSetup(**_fields(scope, principal_id, cause)), cause)
    secret = decision.new_secret if decision else await run.issued_secret(result)
    assert secret is not None  # a setup begun anew issues a key
    material = setup_material(secret, account=body.account, issuer=runtime.settings.totp_issuer)
    return api.SetupMaterial(**_receipt(scope, principal_id, result), key_text=material.key_text,
                             otpauth_uri=material.otpauth_uri, qr_svg=material.qr_svg,
                             qr_png_base64=base64.b64encode(material.qr_png).decode())


@serve(api.CONFIRM_SETUP)
async def confirm_setup(scope: Scope, principal_id: uuid.UUID, body: c.Code, cause: CauseDep,
                        run: CommandsDep) -> api.RecoveryCodes:
    result, decision = await run(c.ConfirmTOTPSetup(**_fields(scope, principal_id, cause), **dict(body)), cause)
    codes = list(decision.recovery_codes.codes) if decision and decision.recovery_codes else []
    return api.RecoveryCodes(**_receipt(scope, principal_id, result), recovery_codes=codes)


@serve(api.VERIFY)
async def verify(scope: Scope, principal_id: uuid.UUID, body: c.Code, cause: CauseDep,
                 run: CommandsDep) -> api.Verified:
    result, decision = await run(c.VerifyTOTP(**_fields(scope, principal_id, cause), **dict(body)), cause)
    assert decision is not None  # a repeated command id was refused above: a verification is never replayed
    verified = decision.events[-1]
    assert isinstance(verified, TOTPVerified)  # a verification refused was raised by `run`
    return api.Verified(**_receipt(scope, principal_id, result), method=verified.method,
                        recovery_codes_left=verified.recovery_codes_left)


@serve(api.REGENERATE_RECOVERY_CODES)
async def regenerate_recovery_codes(scope: Scope, principal_id: uuid.UUID, body: c.AppCode, cause: CauseDep,
                                    run: CommandsDep) -> api.RecoveryCodes:
    command = c.RegenerateRecoveryCodes(**_fields(scope, principal_id, cause), **dict(body))
    result, decision = await run(command, cause)
    assert decision is not None and decision.recovery_codes is not None  # never replayed, never without codes
    codes = list(decision.recovery_codes.codes)
    return api.RecoveryCodes(**_receipt(scope, principal_id, result), recovery_codes=codes)


@serve(api.DECIDE_ACCESS)
async def decide_access(scope: Scope, principal_id: uuid.UUID, body: c.SystemLogin, cause: CauseDep,
                        run: CommandsDep) -> api.AccessDecision:
    command = c.DecideSystemAccess(**_fields(scope, principal_id, cause), **dict(body))
    result, decision = await run(command, cause)
    assert decision is not None  # a repeated command id was refused above: a decision is never replayed
    decided = decision.events[-1]
    assert isinstance(decided, SystemAccessDecided)
    return api.AccessDecision(**_receipt(scope, principal_id, result), decision=decided.outcome,
                              reason=decided.reason)


@serve(api.RECORD_APPLICATION_SIGN_IN)
async def record_application_sign_in(scope: Scope, principal_id: uuid.UUID, body: ApplicationSignIn,
                                     cause: CauseDep, run: CommandsDep) -> CommandReceipt:
    command = c.RecordApplicationSignIn(**_fields(scope, principal_id, cause), **dict(body))
    return await _receipt_of(run, command, cause)


@serve(api.DISMISS_PROMPT)
async def dismiss_prompt(scope: Scope, principal_id: uuid.UUID, cause: CauseDep,
                         run: CommandsDep) -> api.PromptDismissed:
    result, _ = await run(c.DismissEnrollmentPrompt(**_fields(scope, principal_id, cause)), cause)
    dismissed = [body for e in result.events if isinstance(body := e.body(), EnrollmentPromptDismissed)]
    state = await run.state(enrollment_id(scope, principal_id))
    return api.PromptDismissed(**_receipt(scope, principal_id, result),
                               days_remaining=dismissed[-1].days_remaining if dismissed else 0,
                               deadline=state.deadline)


@serve(api.VIEW)
async def view(scope: Scope, principal_id: uuid.UUID, runtime: RuntimeDep, run: CommandsDep) -> api.EnrollmentView:
    state = await run.state(enrollment_id(scope, principal_id))
    now = runtime.clock.now()
    status = enrollment.status(state, now)
    return api.EnrollmentView(
        scope=scope, principal_id=principal_id, status=status, required=state.required, set_up=state.set_up,
        deadline=state.deadline,
        days_remaining=enrollment.days_remaining(state.deadline, now)
        if status == "enrolling" and state.deadline is not None else None,
        throttled_until=state.paused_until if state.paused_until and state.paused_until > now else None,
        locked=state.locked, recovery_codes_left=state.recovery_codes_issued - len(state.used_recovery_codes),
    )


@serve(api.BATCH)
async def run_batch(body: api.Batch, cause: CauseDep, run: CommandsDep) -> api.BatchResults:
    """Each command is decided and appended on its own (one refused or conflicting command leaves the
    others applied), in a few transactions for the whole batch."""
    causes = [Cause(cause.actor, cause.correlation_id, item.command_id) for item in body.commands]
    commands = [_batch_command(item, item_cause) for item, item_cause in zip(body.commands, causes, strict=True)]
    outcomes = await run.batch(list(zip(commands, causes, strict=True)))
    return api.BatchResults(results=[_batch_result(command, outcome)
                                     for command, outcome in zip(commands, outcomes, strict=True)])


def _batch_command(item: api.BatchCommand, cause: Cause) -> c.EnrollmentCommand:
    return BATCH_COMMANDS[item.action](**_fields(item.scope, item.principal_id, cause),
                                       enrollment_days=item.enrollment_days)


def _batch_result(command: c.EnrollmentCommand, outcome: AppendResult | Exception) -> api.BatchResult:
    if isinstance(outcome, AppendResult):
        return api.BatchResult(command_id=command.command_id,
                               receipt=CommandReceipt(**_receipt(command.scope, command.principal_id, outcome)))
    if isinstance(outcome, ConcurrencyConflict):
        body = conflict_body()
    elif isinstance(outcome, Rejected):
        body = rejected_body(outcome)
    else:
        raise outcome
    return api.BatchResult(command_id=command.command_id, problem=Problem(**body))
