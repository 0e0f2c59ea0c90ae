"""Which timers an enrollment event sets, moves or cancels (pure)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import EventPayload

EXPIRY = "expiry"
# The events that set, move or cancel timers; `plan` ignores the others and the consumer skips them.
HANDLES = (mfa.MFARequired, mfa.EnrollmentExtended, mfa.MFAReset, mfa.MFARequirementRemoved, mfa.TOTPEnrolled,
           identity.UserDeleted, identity.AdminDeleted)


@dataclass(frozen=True)
class Timer:
    timer: str
    deadline: datetime
    due_at: datetime


@dataclass(frozen=True)
class Plan:
    """Replace every timer of `enrollment_id` with `timers` (none: cancel them all)."""

    enrollment_id: str
    principal_id: uuid.UUID
    scope: str
    timers: tuple[Timer, ...]
    enrollment_version: int | None = None  # of the enrollment event the timers were set from


def reminder_name(offset_seconds: int) -> str:
    return f"reminder:{offset_seconds}"


def for_deadline(deadline: datetime, offsets_seconds: list[int], received_at: datetime) -> tuple[Timer, ...]:
    """A reminder per offset before the deadline (at once if that moment has passed) and the expiry."""
    reminders = tuple(
        Timer(reminder_name(offset), deadline, min(max(deadline - timedelta(seconds=offset), received_at), deadline))
        for offset in offsets_seconds
    )
    return reminders + (Timer(EXPIRY, deadline, deadline),)


def plan(event: EventPayload, offsets_seconds: list[int], received_at: datetime, version: int) -> Plan | None:
    """What `event`, at `version` of its aggregate, does to its enrollment's timers; None: nothing."""
    match event:
        case mfa.MFARequired() | mfa.EnrollmentExtended() | mfa.MFAReset() if event.deadline is not None:
            timers = for_deadline(event.deadline, offsets_seconds, received_at)
        case mfa.MFARequired() | mfa.MFARequirementRemoved() | mfa.TOTPEnrolled():
            timers = ()
        case identity.UserDeleted(user_id=user_id):
            return Plan(mfa.enrollment_id("user_portal", user_id), user_id, "user_portal", ())
        case identity.AdminDeleted(admin_id=admin_id):
            return Plan(mfa.enrollment_id("admin_portal", admin_id), admin_id, "admin_portal", ())
        case _:
            return None
    return Plan(mfa.enrollment_id(event.scope, event.principal_id), event.principal_id, event.scope, timers, version)
