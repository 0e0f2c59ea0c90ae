"""Throttles password guessing per email, known or not, separately from TOTP code failures.

Counting unknown emails too keeps the answers for known and unknown emails the same.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.clock import Clock


class PasswordGuard:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings) -> None:
        self._pool = pool
        self._clock = clock
        self._max = settings.password_max_failures
        self._window = timedelta(seconds=settings.password_failure_window_seconds)
        self._failures_found = True  # until `check` has looked

    async def check(self, kind: str, email: str) -> None:
        row = await self._pool.fetchrow(
            "SELECT failures, window_from FROM password_failures WHERE kind = $1 AND email = lower($2)", kind, email
        )
        self._failures_found = row is not None
        now = self._clock.now()
        if row and row["failures"] >= self._max and now < row["window_from"] + self._window:
            retry_after = int((row["window_from"] + self._window - now).total_seconds()) + 1
            raise Rejected("too_many_attempts", f"Too many failed sign-ins; try again in {retry_after} seconds.",
                           429, retry_after=retry_after)

    async def failed(self, kind: str, email: str) -> None:
        now = self._clock.now()
        await self._pool.execute(
            "INSERT INTO password_failures (kind, email, failures, window_from) VALUES ($1, lower($2), 1, $3) "
            "ON CONFLICT (kind, email) DO UPDATE SET "
            "failures = CASE WHEN password_failures.window_from + $4 <= $3 THEN 1 ELSE password_failures.failures + 1 END, "
            "window_from = CASE WHEN password_failures.window_from + $4 <= $3 THEN $3 ELSE password_failures.window_from END",
            kind, email, now, self._window,
        )

    async def succeeded(self, kind: str, email: str) -> None:
        """Clears the failures `check` found. With none found it costs no round trip: a failure recorded
        meanwhile (a concurrent attempt) then counts until its window ends, as if it had come after."""
        if not self._failures_found:
            return
        await self._pool.execute("DELETE FROM password_failures WHERE kind = $1 AND email = lower($2)", kind, email)
