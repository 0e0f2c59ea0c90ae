"""Throttling of failed verifications: pauses that double, then a lock only an admin reset lifts.

Only failures count; waiting never resets a count, a success resets the consecutive count and an
MFA reset resets both. While paused or locked an attempt is refused before its code is evaluated,
so guessing during a pause costs nothing and gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mfaplane_eventing.aggregate import Rejected

ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class ThrottlePolicy:
    failures_per_pause: int = 5
    first_pause: timedelta = timedelta(minutes=15)
    lock_after_failures: int = 100

    def __post_init__(self) -> None:
        if self.failures_per_pause < 1 or self.lock_after_failures < 1 or self.first_pause <= timedelta():
            raise ValueError("throttle policy values must be positive")

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
            423,
        )
    if paused_until is not None and now < paused_until:
        retry_after = -(-(paused_until - now) // ONE_SECOND)  # whole seconds, rounded up
        return Rejected(
            "throttled",
            f"Too many failed codes: try again in {retry_after} seconds.",
            429,
            retry_after=retry_after,
        )
    return None
