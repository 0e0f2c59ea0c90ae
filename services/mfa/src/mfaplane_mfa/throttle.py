"""Throttling of wrong codes: pauses that double, then a lock only an admin reset lifts.

A wrong code at sign-in and a wrong code confirming setup count alike. A code just accepted, sent
again (a replay: a double submit, a retry), is refused but is no failure: it proves its sender
holds a correct code, and counting it would let anyone who saw it throttle the real user.

Two counts. The consecutive count makes the pauses: every `failures_per_pause`-th failure in a run
pauses the factor, twice as long as the pause before. A success ends the run, and so does a quiet
`failure_memory` (24 hours by default, after NIST SP 800-63B): a run is forgotten once that long
has passed with attempts allowed and none failed, counted from the last failure or from the end
of the pause it caused, whichever is later, so a pause longer than the memory does not erase the
doubling it earned. The total count never decays and is cleared only by an MFA reset: at
`lock_after_failures` the factor locks. It bounds a slow guesser who spaces runs a quiet period
apart (at most `failures_per_pause` guesses per period plus its pause, 100 in all by default);
the price is that a principal's occasional typos add up towards the lock too.

While paused or locked an attempt is refused before its code is evaluated, so guessing during a
pause costs nothing and gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mfaplane_eventing.aggregate import Refusal, Rejected

ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class ThrottlePolicy:
    failures_per_pause: int = 5
    first_pause: timedelta = timedelta(minutes=15)
    lock_after_failures: int = 100
    failure_memory: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if (self.failures_per_pause < 1 or self.lock_after_failures < 1 or self.first_pause <= timedelta()
                or self.failure_memory <= timedelta()):
            raise ValueError("throttle policy values must be positive")

    def still_counted(self, consecutive_failures: int, *, last_failure: datetime | None,
                      paused_until: datetime | None, now: datetime) -> int:
        """The consecutive failures that still count at `now`: none once the run is forgotten."""
        if last_failure is None:  # recorded without its time: kept
            return consecutive_failures
        quiet_since = max(last_failure, paused_until or last_failure)
        return 0 if now - quiet_since >= self.failure_memory else consecutive_failures

    def pause_after(self, consecutive_failures: int) -> timedelta | None:
        """The pause a run of this many consecutive failures earns: every N-th failure, doubling."""
        pauses, rest = divmod(consecutive_failures, self.failures_per_pause)
        if rest or not pauses:
            return None
        return self.first_pause * 2 ** (pauses - 1)

    def locks(self, total_failures: int) -> bool:
        return total_failures >= self.lock_after_failures


DEFAULT_POLICY = ThrottlePolicy()


def refusal(*, locked: bool, paused_until: datetime | None, now: datetime) -> Rejected | None:
    """Why an attempt is refused unheard right now, or None when it may be evaluated."""
    if locked:
        return Rejected(
            "factor_locked",
            "Too many failed codes: this factor is locked until an administrator resets MFA.",
            Refusal.LOCKED,
        )
    if paused_until is not None and now < paused_until:
        retry_after = -(-(paused_until - now) // ONE_SECOND)  # whole seconds, rounded up
        return Rejected(
            "throttled",
            f"Too many failed codes: try again in {retry_after} seconds.",
            Refusal.THROTTLED,
            retry_after=retry_after,
        )
    return None
