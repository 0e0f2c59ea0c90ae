"""Which timers an enrollment event sets, moves or cancels: given an event, then a plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_scheduler.timers import EXPIRY, Timer, plan

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PRINCIPAL = uuid.uuid4()
ENROLLMENT = f"user_portal:{PRINCIPAL}"


def required(deadline: datetime | None, days: int | None = 7) -> mfa.MFARequired:
    return mfa.MFARequired(principal_id=PRINCIPAL, scope="user_portal", principal_kind="user",
                           enrollment_days=days, deadline=deadline)


def test_a_deadline_sets_a_reminder_24_hours_before_and_the_expiry() -> None:
    change = plan(required(NOW + 7 * DAY), [86400], NOW, 1)
    assert change.enrollment_id == ENROLLMENT
    assert set(change.timers) == {Timer("reminder:86400", NOW + 7 * DAY, NOW + 6 * DAY),
                                  Timer(EXPIRY, NOW + 7 * DAY, NOW + 7 * DAY)}


def test_the_timers_say_which_version_of_the_enrollment_set_them() -> None:
    assert plan(required(NOW + 7 * DAY), [86400], NOW, 4).enrollment_version == 4


def test_a_period_too_short_for_the_reminder_gets_it_at_once() -> None:
    change = plan(required(NOW + timedelta(hours=3), days=1), [86400], NOW, 1)
    assert Timer("reminder:86400", NOW + timedelta(hours=3), NOW) in change.timers


def test_several_configured_offsets_give_several_reminders() -> None:
    change = plan(required(NOW + 7 * DAY), [86400, 3 * 86400], NOW, 1)
    assert {t.timer for t in change.timers} == {"reminder:86400", "reminder:259200", EXPIRY}


def test_extend_and_reset_move_the_timers_to_the_new_deadline() -> None:
    new_deadline = NOW + 30 * DAY
    extended = mfa.EnrollmentExtended(principal_id=PRINCIPAL, scope="user_portal", enrollment_days=30,
                                      deadline=new_deadline)
    reset = mfa.MFAReset(principal_id=PRINCIPAL, scope="user_portal", enrollment_days=30, deadline=new_deadline,
                         shredded_secret_id=None)
    for event in (extended, reset):
        assert {t.deadline for t in plan(event, [86400], NOW, 1).timers} == {new_deadline}


def test_setup_removal_deletion_and_no_period_cancel_every_timer() -> None:
    cancelling = [
        mfa.TOTPEnrolled(principal_id=PRINCIPAL, scope="user_portal", secret_id=uuid.uuid4(), time_step=1,
                         recovery_codes_issued=10),
        mfa.MFARequirementRemoved(principal_id=PRINCIPAL, scope="user_portal"),
        identity.UserDeleted(user_id=PRINCIPAL),
        required(None, days=None),
    ]
    for event in cancelling:
        change = plan(event, [86400], NOW, 1)
        assert change.enrollment_id == ENROLLMENT and change.timers == ()


def test_an_admins_deletion_cancels_the_timers_of_their_admin_portal_enrollment() -> None:
    change = plan(identity.AdminDeleted(admin_id=PRINCIPAL), [86400], NOW, 1)
    assert (change.enrollment_id, change.scope, change.timers) == (f"admin_portal:{PRINCIPAL}", "admin_portal", ())


def test_other_events_leave_timers_alone() -> None:
    dismissed = mfa.EnrollmentPromptDismissed(principal_id=PRINCIPAL, scope="user_portal", days_remaining=3)
    assert plan(dismissed, [86400], NOW, 1) is None
