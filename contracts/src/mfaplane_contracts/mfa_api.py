"""The mfa service's internal API: one endpoint per enrollment command, the enrollment's view, and a
batch of the admin commands (a bulk action's) with a result per command. Called by the gateway only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from mfaplane_contracts import commands as c
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.endpoints import Answer, Endpoint, Problem, Request
from mfaplane_contracts.mfa_events import AccessOutcome, ApplicationSignIn, Scope, enrollment_days
from mfaplane_contracts.mfa_status import MFAStatus

ENROLLMENT = "/enrollments/{scope}/{principal_id}"
AGGREGATE = "{scope}:{principal_id}"  # enrollment_id()
MAX_BATCH = 1000


class Setup(Request):
    account: str = Field(min_length=1, max_length=320, description="shown in the authenticator app (the email)")


class AccessDecision(CommandReceipt):
    decision: AccessOutcome
    reason: str


class SetupMaterial(CommandReceipt):
    key_text: str
    otpauth_uri: str
    qr_svg: str
    qr_png_base64: str


class RecoveryCodes(CommandReceipt):
    recovery_codes: list[str] = Field(description="shown once; store them safely")


class Verified(CommandReceipt):
    # None: an mfa of an older release (in a rolling upgrade) answers without them
    method: Literal["totp", "recovery_code"] | None = None
    recovery_codes_left: int | None = None


class PromptDismissed(CommandReceipt):
    days_remaining: int
    deadline: datetime | None = None  # also None from an mfa of an older release (in a rolling upgrade)


class EnrollmentView(Answer):
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


class BatchCommand(Request):
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


class Batch(Request):
    commands: list[BatchCommand] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(Answer):
    command_id: uuid.UUID
    receipt: CommandReceipt | None = None
    problem: Problem | None = Field(default=None, description="why this command was refused; the others stand")


class BatchResults(Answer):
    results: list[BatchResult]


def _command(action: str, command: type[c.Command], takes: type[BaseModel] | None = None) -> Endpoint[CommandReceipt]:
    return Endpoint("mfa", "POST", f"{ENROLLMENT}/{action}", CommandReceipt, takes, command.command_type, AGGREGATE)


REQUIRE = _command("require", c.RequireMFA, takes=c.RequirePeriod)
REMOVE_REQUIREMENT = _command("remove-requirement", c.RemoveMFARequirement)
EXTEND = _command("extend", c.ExtendEnrollment, takes=c.Period)
RESET = _command("reset", c.ResetMFA, takes=c.Period)
BEGIN_SETUP: Endpoint[SetupMaterial] = Endpoint("mfa", "POST", f"{ENROLLMENT}/begin-setup", SetupMaterial, Setup,
                                                c.BeginTOTPSetup.command_type, AGGREGATE)
CONFIRM_SETUP: Endpoint[RecoveryCodes] = Endpoint("mfa", "POST", f"{ENROLLMENT}/confirm-setup", RecoveryCodes,
                                                  c.Code, c.ConfirmTOTPSetup.command_type, AGGREGATE)
VERIFY: Endpoint[Verified] = Endpoint("mfa", "POST", f"{ENROLLMENT}/verify", Verified, c.Code,
                                      c.VerifyTOTP.command_type, AGGREGATE)
REGENERATE_RECOVERY_CODES: Endpoint[RecoveryCodes] = Endpoint(
    "mfa", "POST", f"{ENROLLMENT}/regenerate-recovery-codes", RecoveryCodes, c.AppCode,
    c.RegenerateRecoveryCodes.command_type, AGGREGATE)
DECIDE_ACCESS: Endpoint[AccessDecision] = Endpoint("mfa", "POST", f"{ENROLLMENT}/access", AccessDecision,
                                                   c.SystemLogin, c.DecideSystemAccess.command_type, AGGREGATE)
RECORD_APPLICATION_SIGN_IN = _command("application-sign-in", c.RecordApplicationSignIn, takes=ApplicationSignIn)
DISMISS_PROMPT: Endpoint[PromptDismissed] = Endpoint("mfa", "POST", f"{ENROLLMENT}/dismiss-prompt", PromptDismissed,
                                                     None, c.DismissEnrollmentPrompt.command_type, AGGREGATE)
VIEW: Endpoint[EnrollmentView] = Endpoint("mfa", "GET", ENROLLMENT, EnrollmentView)
# Each item carries its own command id, the one it would have on its own endpoint: the batch's call is not
# a command of its own.
BATCH_ACTIONS: dict[str, Endpoint[CommandReceipt]] = {"require": REQUIRE, "extend": EXTEND, "reset": RESET}
BATCH: Endpoint[BatchResults] = Endpoint("mfa", "POST", "/enrollments/batch", BatchResults, Batch)
