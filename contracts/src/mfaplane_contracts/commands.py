"""Commands: what a caller asks a service to do. A command id makes a retry apply once.

A command's own terms (a period, a code) are a `Request` of their own, which is also the body of the
endpoint that carries the command (`mfa_api.py`): each rule is declared, and checked, once."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import Field

from mfaplane_contracts.endpoints import Answer, Request
from mfaplane_contracts.envelope import Message
from mfaplane_contracts.mfa_events import ApplicationSignIn, EnrollmentDays, Scope, enrollment_days

DEFAULT_ENROLLMENT_DAYS = 7
CODE_PATTERN = r"^[0-9A-Za-z-]+$"  # a 6-digit TOTP code or a recovery code (letters, digits, dashes)
TotpCode = Field(min_length=6, max_length=32, pattern=CODE_PATTERN)


class Command(Message):
    command_type: ClassVar[str]
    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    actor: str = Field(min_length=1, max_length=200)
    correlation_id: uuid.UUID = Field(default_factory=uuid.uuid4)


class EnrollmentCommand(Command):
    """A command on one principal's enrollment in one portal."""

    principal_id: uuid.UUID
    scope: Scope = "user_portal"


class RequirePeriod(Request):
    enrollment_days: int | None = enrollment_days(default=DEFAULT_ENROLLMENT_DAYS)


class Period(Request):
    enrollment_days: int = EnrollmentDays


class Code(Request):
    """A code from the authenticator app or a recovery code."""

    code: str = TotpCode


class AppCode(Request):
    """A code from the authenticator app (a recovery code is no proof of the app)."""

    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


class SystemLogin(Request):
    """A login to a protected system: `mfa_enabled` is the system's switch, which the identity service
    owns and the gateway read for this decision; `code`, when given, is checked."""

    system_id: uuid.UUID
    mfa_enabled: bool
    code: str | None = Field(default=None, min_length=6, max_length=32, pattern=CODE_PATTERN)
    login_name: str | None = Field(default=None, max_length=32)
    source: str | None = Field(default=None, max_length=255)


class RequireMFA(EnrollmentCommand, RequirePeriod):
    command_type: ClassVar[str] = "RequireMFA"


class RemoveMFARequirement(EnrollmentCommand):
    command_type: ClassVar[str] = "RemoveMFARequirement"


class ExtendEnrollment(EnrollmentCommand, Period):
    command_type: ClassVar[str] = "ExtendEnrollment"


class ResetMFA(EnrollmentCommand, Period):
    command_type: ClassVar[str] = "ResetMFA"


class BeginTOTPSetup(EnrollmentCommand):
    command_type: ClassVar[str] = "BeginTOTPSetup"


class ConfirmTOTPSetup(EnrollmentCommand, Code):
    command_type: ClassVar[str] = "ConfirmTOTPSetup"


class VerifyTOTP(EnrollmentCommand, Code):
    command_type: ClassVar[str] = "VerifyTOTP"


class RegenerateRecoveryCodes(EnrollmentCommand, AppCode):
    """A new set of recovery codes for a principal who has set up MFA, for a code from their app."""

    command_type: ClassVar[str] = "RegenerateRecoveryCodes"


class DismissEnrollmentPrompt(EnrollmentCommand):
    command_type: ClassVar[str] = "DismissEnrollmentPrompt"


class DecideSystemAccess(EnrollmentCommand, SystemLogin):
    """May the principal log in to a protected system?"""

    command_type: ClassVar[str] = "DecideSystemAccess"


class RecordApplicationSignIn(EnrollmentCommand, ApplicationSignIn):
    """The gateway, the identity provider of SSO applications, records how a user's sign-in to one ended
    (its outcome was decided by the sign-in steps, each checked by its own command)."""

    command_type: ClassVar[str] = "RecordApplicationSignIn"


COMMANDS: tuple[type[Command], ...] = (
    RequireMFA,
    RemoveMFARequirement,
    ExtendEnrollment,
    ResetMFA,
    BeginTOTPSetup,
    ConfirmTOTPSetup,
    VerifyTOTP,
    RegenerateRecoveryCodes,
    DismissEnrollmentPrompt,
    DecideSystemAccess,
    RecordApplicationSignIn,
)


class CommandReceipt(Answer):
    """What a service answers to an accepted command: enough for read-your-writes."""

    aggregate_id: str
    version: int = Field(ge=0, description="the aggregate's version after the command")
    event_ids: list[uuid.UUID]
    duplicate: bool = Field(description="the idempotency key was seen before; nothing new was written")
