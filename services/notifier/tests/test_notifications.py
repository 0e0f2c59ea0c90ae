"""Which email an event calls for, whether it still holds, and what it says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts import mfa_events as mfa
from mfaplane_notifier.emails import Recipient, render
from mfaplane_notifier.notifications import Enrollment, enrollment_after, still_holds

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(days=7)
P = uuid.uuid4()
ENROLLING = Enrollment(required=True, configured=False, deadline=DEADLINE)


def test_enrollment_state_follows_the_events() -> None:
    state = enrollment_after(mfa.MFARequired(principal_id=P, scope="user_portal", principal_kind="user",
                                             enrollment_days=7, deadline=DEADLINE), None)
    assert state == ENROLLING
    state = enrollment_after(mfa.TOTPEnrolled(principal_id=P, scope="user_portal", secret_id=uuid.uuid4(),
                                              time_step=1, recovery_codes_issued=10), state)
    assert state.configured and state.required
    state = enrollment_after(mfa.MFAReset(principal_id=P, scope="user_portal", enrollment_days=3,
                                          deadline=NOW + timedelta(days=3), shredded_secret_id=None), state)
    assert state == Enrollment(True, False, NOW + timedelta(days=3))
    assert enrollment_after(mfa.MFARequirementRemoved(principal_id=P, scope="user_portal"), state).required is False


@pytest.mark.parametrize(("kind", "deadline", "enrollment", "expected"), [
    ("reminder", DEADLINE, ENROLLING, True),
    ("reminder", DEADLINE, Enrollment(True, True, DEADLINE), False),  # set up since: no reminder
    ("reminder", DEADLINE, Enrollment(True, False, DEADLINE + timedelta(days=5)), False),  # deadline moved
    ("expired", DEADLINE, Enrollment(False, False, None), False),  # requirement removed
    ("expired", DEADLINE, ENROLLING, True),
    ("extended", DEADLINE, ENROLLING, True),
    ("reset", DEADLINE - timedelta(days=1), ENROLLING, False),  # a later change superseded it
    ("setup_complete", None, Enrollment(True, True, None), True),
    ("setup_complete", None, ENROLLING, False),  # reset since
    ("required", DEADLINE, ENROLLING, True),
    ("required", DEADLINE, None, False),
])
def test_an_email_is_sent_only_while_its_state_still_holds(kind, deadline, enrollment, expected) -> None:
    assert still_holds(kind, deadline, enrollment, NOW) is expected


def test_a_reminder_due_before_a_deadline_that_has_passed_is_not_sent() -> None:
    # the scheduler or the notifier was down over the deadline: the late expiry mail is what holds
    assert still_holds("reminder", DEADLINE, ENROLLING, DEADLINE - timedelta(seconds=1)) is True
    assert still_holds("reminder", DEADLINE, ENROLLING, DEADLINE) is False
    assert still_holds("expired", DEADLINE, ENROLLING, DEADLINE + timedelta(days=3)) is True


def test_required_email_has_name_deadline_days_and_link_in_both_parts() -> None:
    message = render("required", Recipient("ada@example.com", "Ada <Lovelace>", is_admin=False), DEADLINE, NOW,
                     "MFA <mfa@example.com>", "https://portal.example.com/portal")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Ada <Lovelace>" in text and "Saturday 5 December 2026, 12:00 UTC" in text and "7 days" in text
    assert "Ada &lt;Lovelace&gt;" in html and "<Lovelace>" not in html, "HTML is autoescaped"
    assert 'href="https://portal.example.com/portal"' in html
    assert message["To"] == "ada@example.com"


def test_admin_enrollment_gets_its_own_wording() -> None:
    message = render("reminder", Recipient("root@example.com", "Root", is_admin=True), DEADLINE, DEADLINE - timedelta(hours=24),
                     "MFA <mfa@example.com>", "https://portal.example.com/admin")
    assert message["Subject"].endswith("(admin portal)")
    assert "Admin Portal" in message.get_body(("plain",)).get_content()
    assert "24 hours" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("kind", ["required", "reminder", "expired", "extended", "reset", "setup_complete"])
def test_every_kind_renders(kind: str) -> None:
    message = render(kind, Recipient("a@example.com", "A", is_admin=False), DEADLINE, NOW, "m@example.com", "http://p")
    assert message.get_body(("plain",)).get_content().strip()
    assert message.get_body(("html",)).get_content().strip()
