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
from mfaplane_eventing.aggregate import Refusal
from mfaplane_mfa import totp
from mfaplane_mfa.enrollment import Decision, apply
from mfaplane_mfa.throttle import DEFAULT_POLICY, ThrottlePolicy, refusal

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STEP = timedelta(seconds=totp.STEP_SECONDS)


class Timeline:
    """One principal's enrollment as the service would run it: decide, append, move the clock.
    Codes go in as `command` (a verification, or the confirmation of a setup in progress)."""

    def __init__(self, mfa, events, policy=DEFAULT_POLICY, command=VerifyTOTP):
        self.mfa = mfa
        self.state = mfa.given(*events).state
        self.now = mfa.t0 + timedelta(days=1)
        self.policy = policy
        self.command = command

    def attempt(self, code: str) -> Decision:
        decision = self.mfa.decide(
            self.state, self.mfa.cmd(self.command, code=code), now=self.now, secret=self.mfa.secret, policy=self.policy
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
        ThrottlePolicy(failure_memory=timedelta(0))
    with pytest.raises(ValueError):
        ThrottlePolicy(failures_per_pause=0)
    with pytest.raises(ValueError):
        ThrottlePolicy(first_pause=timedelta(0))
    with pytest.raises(ValueError):
        ThrottlePolicy(lock_after_failures=0)


def test_five_failures_pause_fifteen_minutes_then_thirty(mfa):
    line = Timeline(mfa, mfa.set_up())
    for n in range(1, 5):
        assert line.wrong().events == (
            mfa.ev(TOTPVerificationFailed, consecutive_failures=n, total_failures=n, failed_at=line.now),
        )
    fifth = line.wrong()
    assert fifth.rejection.code == "invalid_code"
    assert fifth.events[1] == mfa.ev(TOTPThrottled, until=line.now + 15 * MINUTE, consecutive_failures=5)

    # During the pause even the right code is refused, unheard and unrecorded.
    line.wait(14 * MINUTE)
    paused = line.attempt(line.right_code())
    assert (paused.rejection.code, paused.rejection.kind, paused.events) == ("throttled", Refusal.THROTTLED, ())
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


def failures(decision: Decision) -> tuple[int, int]:
    failed = decision.events[0]
    return failed.consecutive_failures, failed.total_failures


def test_a_run_of_failures_is_forgotten_after_a_quiet_day_but_not_the_total(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(4):
        line.wrong()
    line.wait(DAY - MINUTE)
    assert failures(line.wrong()) == (5, 5)  # the run goes on: pauses
    line.wait(15 * MINUTE + DAY - MINUTE)  # a day less a minute after the pause ended
    assert failures(line.wrong()) == (6, 6)
    line.wait(DAY)
    assert kinds(fresh := line.wrong()) == ["TOTPVerificationFailed"]
    assert failures(fresh) == (1, 7)


def test_the_quiet_day_counts_from_the_end_of_a_pause_so_long_pauses_keep_doubling(mfa):
    line = Timeline(mfa, mfa.set_up(), ThrottlePolicy(failures_per_pause=2, first_pause=16 * HOUR))
    line.wrong()
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 16 * HOUR, consecutive_failures=2)
    line.wait(16 * HOUR)
    line.wrong()
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 32 * HOUR, consecutive_failures=4)
    line.wait(32 * HOUR)  # longer than a day since the last failure, but the factor was paused all along
    line.wrong()
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 64 * HOUR, consecutive_failures=6)
    line.wait(64 * HOUR + DAY)
    assert failures(line.wrong()) == (1, 7)


def test_a_run_recorded_without_its_time_is_kept(mfa):
    line = Timeline(mfa, [*mfa.set_up(), mfa.ev(TOTPVerificationFailed, consecutive_failures=4, total_failures=4)])
    line.wait(timedelta(days=30))
    assert line.wrong().events[1] == mfa.ev(TOTPThrottled, until=line.now + 15 * MINUTE, consecutive_failures=5)


def test_the_total_still_locks_a_guesser_who_waits_out_every_run(mfa):
    line = Timeline(mfa, mfa.set_up(), ThrottlePolicy(failures_per_pause=5, lock_after_failures=10))
    for _ in range(2):
        for _ in range(4):
            assert kinds(line.wrong()) == ["TOTPVerificationFailed"]
        line.wait(DAY)
    line.wrong()
    assert failures(locking := line.wrong()) == (2, 10)
    assert kinds(locking) == ["TOTPVerificationFailed", "TOTPFactorLocked"]
    assert line.attempt(line.right_code()).rejection.code == "factor_locked"


def test_a_configured_failure_memory_is_used(mfa):
    line = Timeline(mfa, mfa.set_up(), ThrottlePolicy(failure_memory=HOUR))
    for _ in range(4):
        line.wrong()
    line.wait(HOUR)
    assert failures(line.wrong()) == (1, 5)


def test_a_success_restarts_the_doubling(mfa):
    line = Timeline(mfa, mfa.set_up())
    for _ in range(5):
        line.wrong()
    line.wait(15 * MINUTE)
    assert kinds(line.right()) == ["TOTPVerified"]
    for n in range(1, 5):
        assert failures(line.wrong()) == (n, 5 + n)
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
        mfa.ev(TOTPVerificationFailed, consecutive_failures=4, total_failures=100, failed_at=line.now),
        mfa.ev(TOTPFactorLocked, total_failures=100),
    )

    line.wait(timedelta(days=365))
    locked = line.attempt(line.right_code())
    assert (locked.rejection.code, locked.rejection.kind, locked.events) == ("factor_locked", Refusal.LOCKED, ())

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


# Setup confirmation: throttled like a verification


def pending_setup(mfa):
    return [*mfa.enrolling(days=30), mfa.ev(TOTPSecretIssued, secret_id=mfa.secret_id)]


def test_thirty_wrong_confirm_codes_then_the_right_one_gives_no_recovery_codes(mfa):
    line = Timeline(mfa, pending_setup(mfa), command=ConfirmTOTPSetup)
    answers = [line.wrong() for _ in range(30)]
    assert [a.rejection.code for a in answers] == ["invalid_code"] * 5 + ["throttled"] * 25
    assert line.state.total_failures == 5
    right = line.attempt(line.right_code())
    assert (right.rejection.code, right.events, right.recovery_codes) == ("throttled", (), None)
    assert not line.state.set_up


def test_a_setup_can_be_confirmed_once_its_pause_is_over(mfa):
    line = Timeline(mfa, pending_setup(mfa), command=ConfirmTOTPSetup)
    for _ in range(5):
        line.wrong()
    line.wait(15 * MINUTE)
    assert kinds(confirmed := line.attempt(line.right_code())) == ["TOTPEnrolled"]
    assert confirmed.recovery_codes is not None
    assert (line.state.consecutive_failures, line.state.total_failures) == (0, 5)


def test_setup_and_sign_in_failures_add_up_to_one_lock(mfa):
    line = Timeline(mfa, pending_setup(mfa), ThrottlePolicy(failures_per_pause=5, lock_after_failures=6),
                    command=ConfirmTOTPSetup)
    for _ in range(4):
        line.wrong()
    assert kinds(line.right()) == ["TOTPEnrolled"]
    line.command = VerifyTOTP
    line.wrong()
    assert kinds(line.wrong()) == ["TOTPVerificationFailed", "TOTPFactorLocked"]


# Replays: the code just accepted, sent again


def test_replaying_the_accepted_code_never_pauses_the_real_user(mfa):
    line = Timeline(mfa, mfa.set_up())
    accepted = line.right_code()
    line.attempt(accepted)
    for _ in range(30):
        replayed = line.attempt(accepted)
        assert (replayed.rejection.code, replayed.rejection.kind, replayed.events) == (
            "code_already_used", Refusal.UNAUTHENTICATED, ())
    assert (line.state.consecutive_failures, line.state.total_failures) == (0, 0)
    assert kinds(line.right()) == ["TOTPVerified"]


def test_a_replay_does_not_end_a_run_of_failures(mfa):
    line = Timeline(mfa, mfa.set_up())
    accepted = line.right_code()
    line.attempt(accepted)
    for _ in range(4):
        line.wrong()
    assert line.attempt(accepted).rejection.code == "code_already_used"
    assert kinds(line.wrong()) == ["TOTPVerificationFailed", "TOTPThrottled"]
