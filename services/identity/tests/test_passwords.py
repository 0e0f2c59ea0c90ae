"""Password hashing: a burst of sign-ins is hashed on at most ARGON2_THREADS threads (each hash holds
its memory cost while it runs), and the answers stay right; beyond the places of the queue a sign-in
is refused at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_identity.passwords import Passwords


async def test_a_burst_is_hashed_on_the_configured_threads_only() -> None:
    passwords = Passwords(time_cost=1, memory_cost_kib=8192, parallelism=1, threads=2, queue=0)
    digest = await passwords.hash("right")

    answers = await asyncio.gather(*(passwords.verify(digest, "right" if i % 2 else "wrong") for i in range(12)),
                                   passwords.verify(None, "right"))

    assert answers == [bool(i % 2) for i in range(12)] + [False]
    assert len([t for t in threading.enumerate() if t.name.startswith("argon2")]) == 2


def test_a_sign_in_finding_every_place_taken_is_refused_at_once_and_the_place_is_free_again_after() -> None:
    passwords = Passwords(time_cost=1, memory_cost_kib=8192, parallelism=1, threads=1, queue=2)
    with contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(passwords.place())
        with pytest.raises(Rejected) as refused, passwords.place():
            pass
    assert (refused.value.kind, refused.value.code, refused.value.extra) == (Refusal.THROTTLED, "server_busy",
                                                                             {"retry_after": 1})
    with passwords.place():
        pass
