"""Password hashing: a burst of sign-ins is hashed on at most ARGON2_THREADS threads (each hash holds
its memory cost while it runs), and the answers stay right."""

from __future__ import annotations

import asyncio
import threading

from mfaplane_identity.passwords import Passwords


async def test_a_burst_is_hashed_on_the_configured_threads_only() -> None:
    passwords = Passwords(time_cost=1, memory_cost_kib=8192, parallelism=1, threads=2)
    digest = await passwords.hash("right")

    answers = await asyncio.gather(*(passwords.verify(digest, "right" if i % 2 else "wrong") for i in range(12)),
                                   passwords.verify(None, "right"))

    assert answers == [bool(i % 2) for i in range(12)] + [False]
    assert len([t for t in threading.enumerate() if t.name.startswith("argon2")]) == 2
