"""DecideSystemAccess (rule 10): given an enrollment's events, when an agent asks whether a login to a
protected system may go on, then the events, always ending with the decision (never a refusal)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from mfaplane_contracts.commands import DecideSystemAccess
from mfaplane_contracts.mfa_events import (
    SystemAccessDecided,
    TOTPFactorLocked,
    TOTPThrottled,
    TOTPVerificationFailed,
    TOTPVerified,
)
from mfaplane_mfa import totp
from mfaplane_mfa.enrollment import secret_id_to_open
from mfaplane_mfa.throttle import DEFAULT_POLICY

DAY = timedelta(days=1)
SSH_HOST = uuid.UUID("5f0c1c9e-0000-4000-8000-0000000000b1")


def ask(mfa, code=None, mfa_enabled=True):
    return mfa.cmd(DecideSystemAccess, system_id=SSH_HOST, mfa_enabled=mfa_enabled, code=code, login_name="ada",
                   source="192.0.2.7")


def decided(mfa, outcome, reason):
    return mfa.ev(SystemAccessDecided, system_id=SSH_HOST, outcome=outcome, reason=reason, login_name="ada",
                  source="192.0.2.7")


def test_a_set_up_user_on_an_mfa_enabled_system_is_asked_for_a_code(mfa):
    mfa.given(*mfa.set_up()).when(ask(mfa), now=mfa.t0 + DAY).then(decided(mfa, "code_required", "mfa_set_up"))


def test_the_right_code_lets_the_login_through_and_is_recorded_as_a_verification(mfa):
    now = mfa.t0 + DAY
    then = mfa.given(*mfa.set_up()).when(ask(mfa, mfa.code(now)), now=now, secret=mfa.secret)
    then.then(mfa.ev(TOTPVerified, method="totp", time_step=totp.time_step(now), recovery_codes_left=10),
              decided(mfa, "allow", "code_verified"))
    assert then.state.last_step == totp.time_step(now)


def test_a_wrong_code_denies_and_counts_as_a_failure(mfa):
    now = mfa.t0 + DAY
    mfa.given(*mfa.set_up()).when(ask(mfa, "000000" if mfa.code(now) != "000000" else "111111"), now=now,
                                  secret=mfa.secret).then(
        mfa.ev(TOTPVerificationFailed, consecutive_failures=1, total_failures=1, failed_at=now),
        decided(mfa, "deny", "invalid_code"))


def test_the_same_code_again_is_denied_as_a_replay(mfa):
    now = mfa.t0 + DAY
    first = mfa.given(*mfa.set_up()).when(ask(mfa, mfa.code(now)), now=now, secret=mfa.secret)
    mfa.given(*mfa.set_up(), *first.decision.events).when(
        ask(mfa, mfa.code(now)), now=now + timedelta(seconds=5), secret=mfa.secret
    ).then(decided(mfa, "deny", "code_already_used"))


def test_repeated_failures_pause_the_factor_and_a_paused_factor_is_not_even_prompted(mfa):
    now = mfa.t0 + DAY
    history = list(mfa.set_up())
    wrong = "000000" if mfa.code(now) != "000000" else "111111"
    for _ in range(DEFAULT_POLICY.failures_per_pause):
        history += mfa.given(*history).when(ask(mfa, wrong), now=now, secret=mfa.secret).decision.events
    assert any(isinstance(event, TOTPThrottled) for event in history)
    mfa.given(*history).when(ask(mfa), now=now).then(decided(mfa, "deny", "throttled"))
    mfa.given(*history).when(ask(mfa, mfa.code(now)), now=now, secret=mfa.secret).then(
        decided(mfa, "deny", "throttled"))


def test_a_locked_factor_denies_without_a_prompt(mfa):
    mfa.given(*mfa.set_up(), mfa.ev(TOTPFactorLocked, total_failures=20)).when(ask(mfa), now=mfa.t0 + DAY).then(
        decided(mfa, "deny", "factor_locked"))


@pytest.mark.parametrize("history", ["none", "enrolling", "expired"])
def test_a_user_who_has_not_set_up_mfa_is_not_asked(mfa, history):
    events = {"none": [], "enrolling": mfa.enrolling(), "expired": mfa.enrolling(days=1)}[history]
    mfa.given(*events).when(ask(mfa), now=mfa.t0 + 3 * DAY).then(decided(mfa, "allow", "mfa_not_set_up"))


def test_a_system_with_mfa_disabled_never_asks(mfa):
    mfa.given(*mfa.set_up()).when(ask(mfa, mfa_enabled=False), now=mfa.t0 + DAY).then(
        decided(mfa, "allow", "mfa_not_enabled_on_system"))


def test_only_a_decision_with_a_code_opens_the_key(mfa):
    state = mfa.given(*mfa.set_up()).state
    assert secret_id_to_open(state, ask(mfa)) is None
    assert secret_id_to_open(state, ask(mfa, "123456")) == mfa.secret_id
