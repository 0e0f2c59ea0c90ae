"""Which email an event calls for, whether it still holds, and what it says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.enrollment_summary import EnrollmentSummary
from mfaplane_notifier.emails import SUBJECTS, Recipient, render
from mfaplane_notifier.notifications import KIND_OF_EVENT, kind_of, still_holds

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(days=7)
P = uuid.uuid4()
ENROLLING = EnrollmentSummary(required=True, set_up=False, deadline=DEADLINE)


@pytest.mark.parametrize(("kind", "deadline", "enrollment", "expected"), [
    ("reminder", DEADLINE, ENROLLING, True),
    ("reminder", DEADLINE, EnrollmentSummary(True, True, DEADLINE), False),  # set up since: no reminder
    ("reminder", DEADLINE, EnrollmentSummary(True, False, DEADLINE + timedelta(days=5)), False),  # deadline moved
    ("expired", DEADLINE, EnrollmentSummary(False, False, None), False),  # requirement removed
    ("expired", DEADLINE, ENROLLING, True),
    ("extended", DEADLINE, ENROLLING, True),
    ("reset", DEADLINE - timedelta(days=1), ENROLLING, False),  # a later change superseded it
    ("setup_complete", None, EnrollmentSummary(True, True, None), True),
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
    message = render("reminder", Recipient("root@example.com", "Root", is_admin=True), DEADLINE,
                     DEADLINE - timedelta(hours=24), "MFA <mfa@example.com>", "https://portal.example.com/admin")
    assert message["Subject"].endswith("(admin portal)")
    assert "Admin Portal" in message.get_body(("plain",)).get_content()
    assert "24 hours" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_every_kind_renders(kind: str) -> None:
    message = render(kind, Recipient("a@example.com", "A", is_admin=False), DEADLINE, NOW, "m@example.com", "http://p",
                     paused_until=NOW, recovery_codes_left=3)
    assert message.get_body(("plain",)).get_content().strip()
    assert message.get_body(("html",)).get_content().strip()


def _verified(method: str) -> mfa.TOTPVerified:
    by_code = method == "recovery_code"
    return mfa.TOTPVerified(principal_id=P, scope="user_portal", method=method, time_step=None if by_code else 1,
                            recovery_codes_left=4, recovery_code_index=5 if by_code else None)


def test_codes_paused_or_locked_and_a_recovery_code_used_call_for_an_email_a_sign_in_does_not() -> None:
    paused = mfa.TOTPThrottled(principal_id=P, scope="user_portal", until=NOW, consecutive_failures=5)
    locked = mfa.TOTPFactorLocked(principal_id=P, scope="admin_portal", total_failures=100)
    assert [kind_of(e) for e in (paused, locked, _verified("recovery_code"))] == [
        "codes_paused", "factor_locked", "recovery_code_used"]
    assert kind_of(_verified("totp")) is None
    assert kind_of(mfa.TOTPVerificationFailed(principal_id=P, scope="user_portal", consecutive_failures=1,
                                              total_failures=1)) is None
    assert set(KIND_OF_EVENT.values()) <= set(SUBJECTS)


@pytest.mark.parametrize("kind", ["codes_paused", "factor_locked", "recovery_code_used"])
@pytest.mark.parametrize("enrollment", [None, ENROLLING, EnrollmentSummary(False, True, None)])
def test_a_notice_about_codes_is_sent_whatever_the_enrollment_has_become(kind, enrollment) -> None:
    assert still_holds(kind, None, enrollment, NOW) is True


def test_the_pause_email_says_until_when() -> None:
    message = render("codes_paused", Recipient("ada@example.com", "Ada", is_admin=False), None, NOW,
                     "MFA <mfa@example.com>", "http://p", paused_until=NOW + timedelta(minutes=15))
    for part in ("plain", "html"):
        assert "Saturday 28 November 2026, 12:15 UTC" in message.get_body((part,)).get_content()
    assert message["Subject"] == "Wrong MFA codes: code entry is paused"


@pytest.mark.parametrize(("left", "says"), [(9, "You have 9 recovery codes left."),
                                            (1, "You have 1 recovery code left."),
                                            (0, "You have no recovery codes left.")])
def test_the_recovery_code_email_says_how_many_are_left(left: int, says: str) -> None:
    message = render("recovery_code_used", Recipient("root@example.com", "Root", is_admin=True), None, NOW,
                     "MFA <mfa@example.com>", "http://p", recovery_codes_left=left)
    assert says in message.get_body(("plain",)).get_content()
    assert message["Subject"] == "A recovery code was used to sign in (admin portal)"


def test_a_password_reset_request_calls_for_a_mail_only_while_its_link_works() -> None:
    expires_at = NOW + timedelta(hours=24)
    requests = [identity.UserPasswordResetRequested(user_id=P, reset_id=uuid.uuid4(), expires_at=expires_at),
                identity.AdminPasswordResetRequested(admin_id=P, reset_id=uuid.uuid4(), expires_at=expires_at)]
    assert [kind_of(request) for request in requests] == ["password_reset", "password_reset"]
    assert still_holds("password_reset", expires_at, None, expires_at - timedelta(seconds=1)) is True
    assert still_holds("password_reset", expires_at, None, expires_at) is False


def test_the_reset_mail_carries_the_link_and_says_until_when_it_works() -> None:
    link = "https://portal.example.com/admin/#reset=abc.def"
    message = render("password_reset", Recipient("root@example.com", "Root", is_admin=True), NOW + timedelta(hours=24),
                     NOW, "MFA <mfa@example.com>", "https://portal.example.com/admin", reset_link=link)
    assert message["Subject"] == "Reset your password (admin portal)"
    text, html = (message.get_body((part,)).get_content() for part in ("plain", "html"))
    assert link in text and f'href="{link}"' in html
    assert "works once, until Sunday 29 November 2026, 12:00 UTC" in text
