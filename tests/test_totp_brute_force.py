"""Guessing one user's TOTP code from many portal sessions at once (an attack on the throttle, rule 9).

The policy (services/mfa throttle.py, defaults): every 5th consecutive failure pauses the factor, for
15 minutes and then twice as long each time; while paused an attempt is refused unheard (429), so
parallel sessions cannot buy more guesses than the policy allows. `TOTPVerificationFailed` events are
the attempts that were actually checked.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from fault_tools import checked_failures
from portal_flows import code_now, new_user, problem, set_up, sign_in

pytestmark = pytest.mark.slow

SESSIONS = 12
GUESSES_PER_SESSION = 4
FAILURES_PER_PAUSE = 5
FIRST_PAUSE = timedelta(minutes=15)


async def set_up_user(admin, portal, clock) -> tuple[str, str, str]:
    user_id, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    return user_id, email, key


async def guess_in_parallel(portal, email: str, guesses: list[str]) -> list[int]:
    """Signs in SESSIONS times, then every session sends its share of the guesses, all at once."""
    challenges = [(await sign_in(portal, email))["challenge"] for _ in range(SESSIONS)]
    answers = await asyncio.gather(*(
        portal.post("/v1/portal/verify", json={"challenge": challenges[i % SESSIONS], "code": code})
        for i, code in enumerate(guesses)
    ))
    for answer in answers:
        assert answer.status_code in (401, 429), answer.text
        problem(answer, answer.status_code, "invalid_code" if answer.status_code == 401 else "throttled")
    return [answer.status_code for answer in answers]


async def assert_a_correct_code_is_refused(portal, email: str, key: str, clock, pause: timedelta) -> None:
    challenge = (await sign_in(portal, email))["challenge"]
    refused = problem(await portal.post("/v1/portal/verify", json={"challenge": challenge,
                                                                   "code": code_now(key, clock)}),
                      429, "throttled")
    assert pause - timedelta(minutes=1) < timedelta(seconds=refused["retry_after"]) <= pause


async def test_parallel_sessions_get_no_more_guesses_than_the_throttle_allows(stack, admin, portal, clock) -> None:
    victim_id, victim, key = await set_up_user(admin, portal, clock)
    _, _, other_key = await set_up_user(admin, portal, clock)
    clock.advance(timedelta(seconds=30))
    # wrong codes, and the other user's valid code of the moment
    guesses = [f"{n:06d}" if n % 2 else code_now(other_key, clock) for n in range(SESSIONS * GUESSES_PER_SESSION)]

    statuses = await guess_in_parallel(portal, victim, guesses)
    assert statuses.count(401) == FAILURES_PER_PAUSE, statuses
    assert await checked_failures(stack, victim_id) == FAILURES_PER_PAUSE
    await assert_a_correct_code_is_refused(portal, victim, key, clock, FIRST_PAUSE)

    clock.advance(FIRST_PAUSE + timedelta(seconds=30))  # the pause is over: the next run of 5 doubles it
    statuses = await guess_in_parallel(portal, victim, guesses)
    assert statuses.count(401) == FAILURES_PER_PAUSE, statuses
    assert await checked_failures(stack, victim_id) == 2 * FAILURES_PER_PAUSE
    await assert_a_correct_code_is_refused(portal, victim, key, clock, 2 * FIRST_PAUSE)
