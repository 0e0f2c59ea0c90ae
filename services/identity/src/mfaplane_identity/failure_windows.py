"""Failed passwords counted per key (an email, a client address) in a window, for the guards that
limit guessing (password_guard.py) and spraying (source_guard.py).

An attempt takes its slot before its password is evaluated, in one statement that refuses once
the window holds `limit` slots: parallel attempts (on any replica) are never evaluated past the
limit, because a slot is taken or refused atomically under the row's lock, and argon2 runs only
after. A window that has run its length starts again with the attempt that finds it so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.clock import Clock


class FailureWindow:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, table: str, keys: tuple[str, ...], limit: int,
                 length: timedelta, refusal: tuple[str, str]) -> None:
        """`table` has the columns `keys`, `failures` and `window_from`; `refusal` is the code and the
        message (before "try again in N seconds") of an attempt refused."""
        self._pool, self._clock = pool, clock
        self._limit, self._length, self._refusal = limit, length, refusal
        n = len(keys)
        columns, match = ", ".join(keys), " AND ".join(f"{key} = ${i}" for i, key in enumerate(keys, 1))
        params = ", ".join(f"${i}" for i in range(1, n + 1))
        now, length_param, limit_param = f"${n + 1}", f"${n + 2}", f"${n + 3}"
        expired = f"w.window_from + {length_param} <= {now}"
        self._take = (
            f"INSERT INTO {table} AS w ({columns}, failures, window_from) VALUES ({params}, 1, {now}) "
            f"ON CONFLICT ({columns}) DO UPDATE SET "
            f"failures = CASE WHEN {expired} THEN 1 ELSE w.failures + 1 END, "
            f"window_from = CASE WHEN {expired} THEN {now} ELSE w.window_from END "
            f"WHERE {expired} OR w.failures < {limit_param} RETURNING window_from"
        )
        self._window_from = f"SELECT window_from FROM {table} WHERE {match}"
        self._give_back = (f"UPDATE {table} SET failures = failures - 1 "
                           f"WHERE {match} AND window_from = ${n + 1} AND failures > 0")
        self._clear = f"DELETE FROM {table} WHERE {match}"

    async def take(self, *key: str) -> datetime:
        """A slot for one attempt, counted as a failure until given back; the start of its window.
        Refused (429, with Retry-After) when the window is full."""
        now = self._clock.now()
        window_from = await self._pool.fetchval(self._take, *key, now, self._length, self._limit)
        if window_from is not None:
            return window_from
        window_from = await self._pool.fetchval(self._window_from, *key)
        retry_after = max(int((window_from + self._length - now).total_seconds()) + 1, 1)
        code, message = self._refusal
        raise Rejected(code, f"{message}; try again in {retry_after} seconds.",
                       Refusal.THROTTLED, retry_after=retry_after)

    async def give_back(self, window_from: datetime, *key: str) -> None:
        """One slot back, if its window is still the current one (a new window started without it)."""
        await self._pool.execute(self._give_back, *key, window_from)

    async def clear(self, *key: str) -> None:
        """Every slot back: the count starts again."""
        await self._pool.execute(self._clear, *key)
