"""Limits password spraying: failed passwords per client address, whatever the emails.

The per-email throttle (password_guard.py) stops many guesses at one account, but one password
tried against every account is one guess at each. So a sign-in also takes a slot in its source's
window (the client address the gateway saw; per /64 for IPv6) before the password is evaluated, in
one statement that refuses once the window holds SOURCE_MAX_PASSWORD_FAILURES: parallel attempts
from one source are never evaluated past the limit, on any replica. A wrong password keeps its slot;
a success, or an attempt refused before its password was evaluated, gives its own slot back (only
its own: signing in to one's own account does not wipe a spray's count).

A refused source is told so before any email is looked at: the answer is the same for known and
unknown emails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg

from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.clock import Clock

WRONG_PASSWORD = "invalid_credentials"  # the code /authenticate answers a wrong password (or email) with
_TAKE_SLOT = (
    "INSERT INTO source_failures (source, failures, window_from) VALUES ($1, 1, $2) "
    "ON CONFLICT (source) DO UPDATE SET "
    "failures = CASE WHEN source_failures.window_from + $3 <= $2 THEN 1 ELSE source_failures.failures + 1 END, "
    "window_from = CASE WHEN source_failures.window_from + $3 <= $2 THEN $2 ELSE source_failures.window_from END "
    "WHERE source_failures.window_from + $3 <= $2 OR source_failures.failures < $4 "
    "RETURNING window_from"
)


class SourceGuard:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings) -> None:
        self._pool = pool
        self._clock = clock
        self._max = settings.source_max_password_failures
        self._window = timedelta(seconds=settings.source_failure_window_seconds)

    @contextlib.asynccontextmanager
    async def attempt(self, source: str) -> AsyncIterator[None]:
        """Around the evaluation of one password from `source`: its slot stays taken if the password was wrong."""
        window_from = await self._take_slot(source)
        try:
            yield
        except Rejected as refused:
            if refused.code != WRONG_PASSWORD:
                await self._give_back(source, window_from)
            raise
        await self._give_back(source, window_from)

    async def _take_slot(self, source: str) -> datetime:
        now = self._clock.now()
        window_from = await self._pool.fetchval(_TAKE_SLOT, source, now, self._window, self._max)
        if window_from is not None:
            return window_from
        window_from = await self._pool.fetchval("SELECT window_from FROM source_failures WHERE source = $1", source)
        retry_after = max(int((window_from + self._window - now).total_seconds()) + 1, 1)
        raise Rejected("source_throttled", "Too many failed sign-ins from this network; try again in "
                       f"{retry_after} seconds.", 429, retry_after=retry_after)

    async def _give_back(self, source: str, window_from: datetime) -> None:
        """One slot back, if its window is still the current one (a new window started without it)."""
        await self._pool.execute("UPDATE source_failures SET failures = failures - 1 "
                                 "WHERE source = $1 AND window_from = $2 AND failures > 0", source, window_from)
