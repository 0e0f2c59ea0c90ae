"""Throttles password guessing per email, known or not, separately from TOTP code failures.

An attempt takes its slot before the password is evaluated, in one statement that refuses once the
window holds `password_max_failures` slots: parallel guesses for one email (on any replica) are
never evaluated past the limit, because a slot is taken or refused atomically by the row lock, and
argon2 runs only after. A success gives the slots back (the count starts again); a failure, or a
crash mid-check, keeps its slot, so a guess is never free.

Counting unknown emails too keeps the answers for known and unknown emails the same.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.clock import Clock

_TAKE_SLOT = (
    "INSERT INTO password_failures (kind, email, failures, window_from) VALUES ($1, lower($2), 1, $3) "
    "ON CONFLICT (kind, email) DO UPDATE SET "
    "failures = CASE WHEN password_failures.window_from + $4 <= $3 THEN 1 ELSE password_failures.failures + 1 END, "
    "window_from = CASE WHEN password_failures.window_from + $4 <= $3 THEN $3 ELSE password_failures.window_from END "
    "WHERE password_failures.window_from + $4 <= $3 OR password_failures.failures < $5 "
    "RETURNING true"
)


class PasswordGuard:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings) -> None:
        self._pool = pool
        self._clock = clock
        self._max = settings.password_max_failures
        self._window = timedelta(seconds=settings.password_failure_window_seconds)

    async def take_slot(self, kind: str, email: str) -> None:
        """Counts this attempt as a failure until `succeeded`; refuses it unheard when the window is full."""
        now = self._clock.now()
        if await self._pool.fetchval(_TAKE_SLOT, kind, email, now, self._window, self._max):
            return
        window_from = await self._pool.fetchval(
            "SELECT window_from FROM password_failures WHERE kind = $1 AND email = lower($2)", kind, email)
        retry_after = int((window_from + self._window - now).total_seconds()) + 1
        raise Rejected("too_many_attempts", f"Too many failed sign-ins; try again in {retry_after} seconds.",
                       429, retry_after=max(retry_after, 1))

    async def succeeded(self, kind: str, email: str) -> None:
        await self._pool.execute("DELETE FROM password_failures WHERE kind = $1 AND email = lower($2)", kind, email)
