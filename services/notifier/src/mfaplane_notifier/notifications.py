"""Which email an event calls for, and whether it still makes sense when its turn comes (pure)."""

from __future__ import annotations

from datetime import datetime

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.enrollment_summary import EnrollmentSummary
from mfaplane_contracts.envelope import EventPayload

KIND_OF_EVENT: dict[type[EventPayload], str] = {
    mfa.MFARequired: "required",
    mfa.EnrollmentExpiring: "reminder",
    mfa.EnrollmentExpired: "expired",
    mfa.EnrollmentExtended: "extended",
    mfa.MFAReset: "reset",
    mfa.TOTPEnrolled: "setup_complete",
    mfa.TOTPThrottled: "codes_paused",
    mfa.TOTPFactorLocked: "factor_locked",
    mfa.TOTPVerified: "recovery_code_used",  # only when it used one: see kind_of
    identity.UserPasswordResetRequested: "password_reset",
    identity.AdminPasswordResetRequested: "password_reset",
}
# What happened to the principal's codes: told whatever the enrollment has become since.
NOTICES = {"codes_paused", "factor_locked", "recovery_code_used"}


def kind_of(event: EventPayload) -> str | None:
    """The email an event calls for, if any."""
    if isinstance(event, mfa.TOTPVerified) and event.method != "recovery_code":
        return None
    return KIND_OF_EVENT.get(type(event))


def still_holds(kind: str, deadline: datetime | None, enrollment: EnrollmentSummary | None, now: datetime) -> bool:
    """A reminder after the user has set up, for a deadline since moved, or once the deadline has
    passed (a scheduler or notifier that was down sends it late; the expiry mail says what holds) is
    not sent. A notice about the principal's codes is always sent; a password reset link while it works
    (`deadline`: when it expires)."""
    if kind in NOTICES:
        return True
    if kind == "password_reset":
        return deadline is not None and now < deadline
    if enrollment is None:
        return False
    if kind == "setup_complete":
        return enrollment.set_up
    if kind == "required":
        return enrollment.required
    current_period = enrollment.required and enrollment.deadline == deadline
    if kind == "reminder":
        return current_period and not enrollment.set_up and deadline is not None and now < deadline
    if kind == "expired":
        return current_period and not enrollment.set_up
    return current_period  # extended, reset
