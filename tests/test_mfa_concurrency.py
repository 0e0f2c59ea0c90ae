"""Concurrent commands on one enrollment: no lost update, and a code is accepted at most once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from portal_flows import code_now, new_user, ok, problem, set_up, sign_in


async def test_many_concurrent_guesses_of_one_valid_code_are_accepted_once(admin, portal, clock) -> None:
    _, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(timedelta(seconds=30))
    challenges = [(await sign_in(portal, email))["challenge"] for _ in range(12)]
    code = code_now(key, clock)
    answers = await asyncio.gather(*(portal.post("/v1/portal/verify", json={"challenge": c, "code": code})
                                     for c in challenges))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    # The others are refused as the code just used, none as a wrong code: nothing pauses the user.
    for answer in answers:
        if answer.status_code != 200:
            problem(answer, 401, "code_already_used")


async def _stored_types(stack, user_id: str) -> list[str]:
    conn = await asyncpg.connect(stack.infra.database_url, server_settings={"search_path": "mfa"})
    try:
        rows = await conn.fetch("SELECT aggregate_version, type FROM events WHERE aggregate_id = $1 "
                                "ORDER BY aggregate_version", f"user_portal:{user_id}")
    finally:
        await conn.close()
    assert [r["aggregate_version"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["type"] for r in rows]


async def test_two_concurrent_commands_are_both_applied(stack, admin) -> None:
    user_id, _ = await new_user(admin, enrollment_days=7)
    extend, reset = await asyncio.gather(
        admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 3}),
        admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 4}),
    )
    assert sorted([ok(extend)["version"], ok(reset)["version"]]) == [2, 3], "the loser was decided again"
    assert sorted(await _stored_types(stack, user_id)) == ["EnrollmentExtended", "MFARequired", "MFAReset"]


async def test_fifty_conflicting_commands_end_consistent_and_every_loser_is_told_why(stack, admin) -> None:
    user_id, _ = await new_user(admin, enrollment_days=7)
    answers = await asyncio.gather(*(admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": d})
                                     for d in range(1, 51)))
    winners = [a.json() for a in answers if a.status_code == 200]
    losers = [a.json() for a in answers if a.status_code != 200]
    assert {loser["code"] for loser in losers} <= {"concurrent_modification"}
    assert sorted(w["version"] for w in winners) == list(range(2, 2 + len(winners))), "none lost, none merged"
    assert await _stored_types(stack, user_id) == ["MFARequired"] + ["EnrollmentExtended"] * len(winners)
