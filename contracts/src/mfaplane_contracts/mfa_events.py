"""Events of the enrollment aggregate: one per principal (user or admin) and scope.

No TOTP key, code or recovery code ever appears here: the mfa service keeps key material in its
own encrypted table and events refer to it by `secret_id` only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from mfaplane_contracts.envelope import EventPayload, Message
from mfaplane_contracts.topics import MFA_EVENTS, SCHEDULER_EVENTS

Scope = Literal["user_portal", "admin_portal"]
PrincipalKind = Literal["user", "admin"]
# Whose enrollment a scope holds: the user portal's are users', the admin portal's admins'.
PRINCIPAL_KINDS: dict[Scope, PrincipalKind] = {"user_portal": "user", "admin_portal": "admin"}
MAX_ENROLLMENT_DAYS = 365


def enrollment_days(**field: Any) -> Any:
    """The one rule of an enrollment period, wherever one is taken: whole days, 1 to MAX_ENROLLMENT_DAYS."""
    return Field(ge=1, le=MAX_ENROLLMENT_DAYS, **field)


EnrollmentDays = enrollment_days()


def enrollment_id(scope: str, principal_id: uuid.UUID | str) -> str:
    """The aggregate id of a principal's enrollment in a scope (also the Kafka key)."""
    return f"{scope}:{principal_id}"


class _EnrollmentEvent(EventPayload):
    aggregate_type: ClassVar[str] = "enrollment"
    topic: ClassVar[str] = MFA_EVENTS.name
    principal_id: uuid.UUID
    scope: Scope


class MFARequired(_EnrollmentEvent):
    event_type: ClassVar[str] = "MFARequired"
    principal_kind: PrincipalKind
    enrollment_days: int | None = EnrollmentDays
    deadline: datetime | None  # None: required with no enrollment period, or already set up
    already_set_up: bool = False  # TOTP was set up before: MFA is active at once, no period


class MFARequirementRemoved(_EnrollmentEvent):
    event_type: ClassVar[str] = "MFARequirementRemoved"


class EnrollmentExtended(_EnrollmentEvent):
    event_type: ClassVar[str] = "EnrollmentExtended"
    enrollment_days: int = EnrollmentDays
    deadline: datetime


class MFAReset(_EnrollmentEvent):
    event_type: ClassVar[str] = "MFAReset"
    enrollment_days: int = EnrollmentDays
    deadline: datetime
    shredded_secret_id: uuid.UUID | None


class TOTPSecretIssued(_EnrollmentEvent):
    event_type: ClassVar[str] = "TOTPSecretIssued"
    secret_id: uuid.UUID
    replaced_secret_id: uuid.UUID | None = None  # an unconfirmed secret to destroy


class TOTPEnrolled(_EnrollmentEvent):
    event_type: ClassVar[str] = "TOTPEnrolled"
    secret_id: uuid.UUID
    time_step: int
    recovery_codes_issued: int


class TOTPVerified(_EnrollmentEvent):
    event_type: ClassVar[str] = "TOTPVerified"
    method: Literal["totp", "recovery_code"]
    time_step: int | None
    recovery_codes_left: int
    recovery_code_index: int | None = Field(default=None, ge=0)  # which code was used up


class RecoveryCodesRegenerated(_EnrollmentEvent):
    """The principal made a new set of recovery codes, proving it with a code from their app (whose time
    step is used up here as at a sign-in): the previous set, used or not, no longer works."""

    event_type: ClassVar[str] = "RecoveryCodesRegenerated"
    secret_id: uuid.UUID  # the key the new codes belong to (their hashes are stored under it)
    time_step: int
    recovery_codes_issued: int


class TOTPVerificationFailed(_EnrollmentEvent):
    """A wrong code, at sign-in or when confirming setup; a code just accepted, sent again, is no failure."""

    event_type: ClassVar[str] = "TOTPVerificationFailed"
    consecutive_failures: int
    total_failures: int
    # When: the throttle forgets a run of failures after a quiet period. None in events recorded
    # before this field existed; such a run is kept until the next failure.
    failed_at: datetime | None = None


class TOTPThrottled(_EnrollmentEvent):
    event_type: ClassVar[str] = "TOTPThrottled"
    until: datetime
    consecutive_failures: int


class TOTPFactorLocked(_EnrollmentEvent):
    event_type: ClassVar[str] = "TOTPFactorLocked"
    total_failures: int


class EnrollmentPromptDismissed(_EnrollmentEvent):
    event_type: ClassVar[str] = "EnrollmentPromptDismissed"
    days_remaining: int


AccessOutcome = Literal["allow", "code_required", "deny"]


class SystemAccessDecided(_EnrollmentEvent):
    """A protected system's agent asked whether the principal may log in (rule 10), and was answered.
    A code the decision checked is recorded by its own events (TOTPVerified, TOTPVerificationFailed)
    just before this one; the code itself never is."""

    event_type: ClassVar[str] = "SystemAccessDecided"
    system_id: uuid.UUID
    outcome: AccessOutcome
    reason: str = Field(min_length=1, max_length=64)
    login_name: str | None = Field(default=None, max_length=32)  # None: the agent sent email and password
    source: str | None = Field(default=None, max_length=255)  # where the login came from, as the agent saw it


class ApplicationSignIn(Message):
    """How a sign-in to an SSO application through the gateway ended: the user went back to the application
    signed in (`mfa_used`: with a code checked on the way), or was refused (`reason`)."""

    system_id: uuid.UUID
    protocol: Literal["oidc", "saml"]
    outcome: Literal["signed_in", "refused"]
    reason: str = Field(min_length=1, max_length=64)
    mfa_used: bool
    source: str | None = Field(default=None, max_length=255)  # the browser's address, as the gateway saw it


class ApplicationSignInDecided(_EnrollmentEvent, ApplicationSignIn):
    """An application sign-in's ending, on the user's history. The codes and passwords checked on the way
    are recorded by their own events."""

    event_type: ClassVar[str] = "ApplicationSignInDecided"


class _TimerEvent(_EnrollmentEvent):
    """A deadline timer's firing. It travels on the scheduler's topic, which is not ordered with the
    enrollment's own, so it says what it was set from: the version of the enrollment event that set
    `deadline`. A consumer that has seen a later version of that enrollment knows the timer is stale;
    one that has seen an earlier one knows the timer overtook the event."""

    schema_version: ClassVar[int] = 2
    aggregate_type: ClassVar[str] = "deadline_timer"
    topic: ClassVar[str] = SCHEDULER_EVENTS.name
    deadline: datetime
    due_at: datetime
    enrollment_version: int | None = Field(ge=1)  # None: set before v2, when timers did not say


def timer_event_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 timer events did not say which enrollment version set their deadline: they say it is unknown."""
    return {**payload, "enrollment_version": None}


class EnrollmentExpiring(_TimerEvent):
    event_type: ClassVar[str] = "EnrollmentExpiring"


class EnrollmentExpired(_TimerEvent):
    event_type: ClassVar[str] = "EnrollmentExpired"
