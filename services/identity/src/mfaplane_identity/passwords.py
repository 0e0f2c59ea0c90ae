"""Password hashing with argon2id. Hashing is slow on purpose, so it runs off the event loop.

It runs on threads of its own, as many as `ARGON2_THREADS`, never on asyncio's default executor:
that one has up to cpu_count + 4 threads, and cpu_count is the node's, not the pod's limit. A burst
of sign-ins would run that many hashes at once, each holding ARGON2_MEMORY_COST_KIB (64 MiB by
default): 20 threads on a 16-core node need 1.25 GiB, above the pod's memory limit. More hashes at
once than cores also only adds switching (docs/performance.md, the password step). Requests beyond
the threads wait their turn.

A sign-in waits only if few enough wait already: at most `threads` hashing and `queue` waiting hold a
place, and one finding none is refused at once (429 `server_busy`, Retry-After). Unbounded, a burst
of sign-ins with random emails would make every later one wait behind it until the gateway gave up
on it (a 503 after 10 s), a real user's included. A sign-in, and an owner's password change or reset,
holds its place from arrival to answer; the hashes of the passwords admins give new accounts take none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mfaplane_eventing.aggregate import Refusal, Rejected

# Compared against when the email is unknown, so both answers take the same time.
_DUMMY_PASSWORD = "not-a-real-password-only-for-constant-time"
BUSY_RETRY_AFTER_SECONDS = 1


class Passwords:
    def __init__(self, time_cost: int, memory_cost_kib: int, parallelism: int, threads: int, queue: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        self._dummy_hash = self._hasher.hash(_DUMMY_PASSWORD)
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="argon2")
        self._places = threads + queue
        self._taken = 0

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """A place among the hashes running or waiting, held for the block; none left: refused at once."""
        if self._taken >= self._places:
            raise Rejected("server_busy", "Too many sign-ins at once; retry in a moment.", Refusal.THROTTLED,
                           retry_after=BUSY_RETRY_AFTER_SECONDS)
        self._taken += 1
        try:
            yield
        finally:
            self._taken -= 1

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        verified = await asyncio.get_running_loop().run_in_executor(
            self._threads, self._verify, password_hash or self._dummy_hash, password)
        return verified and bool(password_hash)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
