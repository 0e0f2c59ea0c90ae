"""The one fold of an enrollment's summary, given events / when an event / then the summary: what the
gateway's read model, its audit history and the notifier all see."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.enrollment_summary import EnrollmentSummary
from mfaplane_contracts.mfa_status import MFAStatus

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(days=7)
ON = {"principal_id": uuid.uuid4(), "scope": "user_portal"}
REQUIRED = mfa.MFARequired(**ON, principal_kind="user", enrollment_days=7, deadline=DEADLINE)
SET_UP = mfa.TOTPEnrolled(**ON, secret_id=uuid.uuid4(), time_step=1, recovery_codes_issued=10)
EXTENDED = mfa.EnrollmentExtended(**ON, enrollment_days=14, deadline=NOW + timedelta(days=14))
RESET = mfa.MFAReset(**ON, enrollment_days=3, deadline=NOW + timedelta(days=3), shredded_secret_id=None)
REMOVED = mfa.MFARequirementRemoved(**ON)
VERIFIED = mfa.TOTPVerified(**ON, method="totp", time_step=2, recovery_codes_left=10)


def summary(*events: mfa.EventPayload) -> EnrollmentSummary:
    state = EnrollmentSummary()
    for event in events:
        state = state.after(event)
    return state


@pytest.mark.parametrize(("given", "when", "then", "status"), [
    ((), REQUIRED, EnrollmentSummary(True, False, DEADLINE), MFAStatus.ENROLLING),
    ((REQUIRED,), SET_UP, EnrollmentSummary(True, True, DEADLINE), MFAStatus.ACTIVE),
    ((REQUIRED,), EXTENDED, EnrollmentSummary(True, False, EXTENDED.deadline), MFAStatus.ENROLLING),
    ((REQUIRED, SET_UP), RESET, EnrollmentSummary(True, False, RESET.deadline), MFAStatus.ENROLLING),
    ((REQUIRED, SET_UP), REMOVED, EnrollmentSummary(False, True, None), MFAStatus.CONFIGURED_NOT_REQUIRED),
    ((REQUIRED,), REMOVED, EnrollmentSummary(False, False, None), MFAStatus.NONE),
    ((REQUIRED, SET_UP), VERIFIED, EnrollmentSummary(True, True, DEADLINE), MFAStatus.ACTIVE),  # no change
])
def test_each_event_sets_its_facts_and_leaves_the_others(given, when, then, status) -> None:
    after = summary(*given).after(when)
    assert after == then
    assert after.status(NOW) == status


def test_a_deadline_passed_without_setup_is_expired() -> None:
    assert summary(REQUIRED).status(DEADLINE) == MFAStatus.EXPIRED
