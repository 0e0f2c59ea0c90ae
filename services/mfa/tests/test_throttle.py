"""Throttle and lockout timelines on a fake clock: plain datetime values moved by the test."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mfaplane_contracts.commands import ConfirmTOTPSetup, ResetMFA, VerifyTOTP
from mfaplane_contracts.mfa_events import (
    TOTPFactorLocked,
    TOTPSecretIssued,
    TOTPThrottled,
    TOTPVerificationFailed,
    TOTPVerified,
)
from mfaplane_mfa import totp
from mfaplane_mfa.enrollment import Decision, apply
from mfaplane_mfa.throttle import DEFAULT_POLICY, ThrottlePolicy, refusal

MINUTE = timedelta(minutes=1)
STEP = timedelta(seconds=totp.STEP_SECONDS)


class Timeline:
    """One principal's enrollment as the service would run it: decide, append, move the clock."""

    def __init__(self, mfa, events, policy=DEFAULT_POLICY):
        self.mfa = mfa
        self.state = mfa.given(*events).state
        self.now = mfa.t0 + timedelta(days=1)
        self.policy = policy

    def attempt(self, code: str) -> Decision:
        decision = self.mfa.decide(
            self.state, self.mfa.cmd(VerifyTOTP, code=code), now=self.now, secret=self.mfa.secret, policy=self.policy
        )
        for event in decision.events:
            self.state = apply(self.state, event)
        return decision

    def wrong(self) -> Decision:
        return self.attempt(f"{(int(self.right_code()) + 1) % 1_000_000:06d}")

    def right_code(self) -> str:
        return self.mfa.code(self.now)

    def right(self) -> Decision:
        self.now += STEP  # a fresh step: the previous code was used up
        return self.attempt(self.right_code())

    def wait(self, delta: timedelta) -> None:
        self.now += delta


def kinds(decision: Decision) -> list[str]:
    return [type(event).__name__ for event in decision.events]


@pytest.mark.parametrize(
    ("consecutive", "pause"),
    [
        (0, None),
        (1, None),
        (4, None),
        (5, 15 * MINUTE),
        (6, None),
        (10, 30 * MINUTE),
        (15, 60 * MINUTE),
        (25, 240 * MINUTE),
    ],
)
def test_default_policy_pauses(consecutive, pause):
    assert DEFAULT_POLICY.pause_after(consecutive) == pause


def test_policy_values_must_be_positive():
    with pytest.raises(ValueError):
        ThrottlePolicy(failures_per_pause=0)
    with pytest.raises(ValueError):
        ThrottlePolicy(first_pause=timedelta(0))
    with pytest.raises(ValueError):
        ThrottlePolicy(lock_after_failures=0)


def test_five_failures_pause_fifteen_minutes_then_thirty(mfa):
    line = Timeline(mfa, mfa.set_up())
    for n in range(1, 5):
        assert line.wrong().events == (mfa.ev(TOTPVerificationFailed, consecutive_failures=n, total_failures=n),)
    fifth = line.wrong()
    assert fifth.rejection.code == "invalid_code"
    assert fifth.events[1] == mfa.ev(TOTPThrottled, until=line.now + 15 * MINUTE, consecutive_failures=5)

    # During the pause even the right code is refused, unheard and unrecorded.
    line.wait(14 * MINUTE)
    paused = line.attempt(line.right_code())
    assert (paused.rejection.code, paused.rejection.status, paused.events) == ("throttled", 429, ())
    assert paused.rejection.extra == {"retry_after": 60}
    assert line.state.total_failures == 5

    line.wait(MINUTE)
    for _ in range(4):
        assert kinds(line.wrong()) == ["TOTPVerificationFailed"]
    tenth = line.wrong()
    assert tenth.events[1] == mfa.ev(TOTPThrottled, until=line.now + 30 * MINUTE, consecutive_failures=10)
    line.wait(29 * MINUTE)
    assert line.attempt(line.right_code()).rejection.code == "throttled"
    line.wait(MINUTE)
    assert kinds(line.right()) == ["TOTPVerified"]


def test_retry_after_rounds_up_to_whole_seconds(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(5):
        line.wrong()
    line.wait(15 * MINUTE - timedelta(milliseconds=1500))
    assert line.attempt("000000").rejection.extra == {"retry_after": 2}


def test_waiting_never_resets_the_counts(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(5):
        line.wrong()
    line.wait(timedelta(days=30))
    for _ in range(4):
        line.wrong()
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 30 * MINUTE, consecutive_failures=10)


def test_a_success_restarts_the_doubling(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(5):
        line.wrong()
    line.wait(15 * MINUTE)
    assert kinds(line.right()) == ["TOTPVerified"]
    for n in range(1, 5):
        assert line.wrong().events[0] == mfa.ev(TOTPVerificationFailed, consecutive_failures=n, total_failures=5 + n)
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 15 * MINUTE, consecutive_failures=5)


def test_one_hundred_failures_lock_the_factor_until_an_admin_reset(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(24):  # four failures and a success, never paused
        for _ in range(4):
            assert kinds(line.wrong()) == ["TOTPVerificationFailed"]
        assert kinds(line.right()) == ["TOTPVerified"]
    for _ in range(3):
        line.wrong()
    assert line.state.total_failures == 99
    hundredth = line.wrong()
    assert hundredth.rejection.code == "invalid_code"
    assert hundredth.events == (
        mfa.ev(TOTPVerificationFailed, consecutive_failures=4, total_failures=100),
        mfa.ev(TOTPFactorLocked, total_failures=100),
    )

    line.wait(timedelta(days=365))
    locked = line.attempt(line.right_code())
    assert (locked.rejection.code, locked.rejection.status, locked.events) == ("factor_locked", 423, ())

    reset = mfa.decide(line.state, mfa.cmd(ResetMFA, enrollment_days=7), now=line.now)
    line.state = apply(line.state, reset.events[0])
    assert mfa.decide(line.state, mfa.cmd(VerifyTOTP, code="123456"), now=line.now).rejection.code == "not_set_up"
    line.wait(STEP)
    line.state = apply(line.state, mfa.ev(TOTPSecretIssued, secret_id=mfa.secret_id))
    confirmed = mfa.decide(
        line.state, mfa.cmd(ConfirmTOTPSetup, code=line.right_code()), now=line.now, secret=mfa.secret
    )
    for event in confirmed.events:
        line.state = apply(line.state, event)
    assert kinds(line.right()) == ["TOTPVerified"]
    assert (line.state.consecutive_failures, line.state.total_failures, line.state.locked) == (0, 0, False)


def test_the_lock_wins_over_a_pause_at_the_same_failure(mfa):
    line = Timeline(mfa, mfa.set_up(), ThrottlePolicy(failures_per_pause=5, lock_after_failures=10))
    for _ in range(5):
        line.wrong()
    line.wait(15 * MINUTE)
    for _ in range(4):
        line.wrong()
    assert kinds(line.wrong()) == ["TOTPVerificationFailed", "TOTPFactorLocked"]
    assert line.attempt(line.right_code()).rejection.code == "factor_locked"


def test_a_locked_factor_is_refused_before_a_pause_is_considered(mfa):
    now = mfa.t0
    assert refusal(locked=True, paused_until=now + MINUTE, now=now).code == "factor_locked"
    assert refusal(locked=False, paused_until=now + MINUTE, now=now).code == "throttled"
    assert refusal(locked=False, paused_until=now, now=now) is None
    assert refusal(locked=False, paused_until=None, now=now) is None


def test_a_configured_policy_is_used(mfa):
    policy = ThrottlePolicy(failures_per_pause=2, first_pause=timedelta(seconds=10), lock_after_failures=50)
    line = Timeline(mfa, mfa.set_up(), policy)
    line.wrong()
    assert line.wrong().events[1] == mfa.ev(
        TOTPThrottled, until=line.now + timedelta(seconds=10), consecutive_failures=2
    )


def test_a_recovery_code_is_throttled_like_a_totp_code(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(5):
        line.wrong()
    assert line.attempt("AAAA-BBBB-CCCC-DDDD").rejection.code == "throttled"


def test_success_events_carry_the_accepted_step(mfa):
    line = Timeline(mfa, mfa.set_up())
    decision = line.right()
    assert decision.events == (
        mfa.ev(TOTPVerified, method="totp", time_step=totp.time_step(line.now), recovery_codes_left=10),
    )
