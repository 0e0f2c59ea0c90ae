"""Sign-in challenges are single-use and re-checked when redeemed; sessions end when the account changes.

Each test is an attack a holder of a stolen or stale challenge or session makes, refused with nothing
changed (no session, no event).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from fault_tools import eventually, schema
from mfaplane_contracts.mfa_events import enrollment_id
from portal_flows import new_user, ok, problem, set_up, sign_in


async def _events(stack, user_id: str, event_type: str) -> int:
    async with schema(stack, "mfa") as db:
        return await db.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1 AND type = $2",
                                 enrollment_id("user_portal", user_id), event_type)


async def _projected(admin: httpx.AsyncClient, user_id: str, receipt: dict) -> None:
    """Waits until the gateway has projected the command behind `receipt` (and so cut off what it ends). The
    user's creation travels on identity's topic, the command's on mfa's: the token waits for the second,
    the user's row for the first."""
    async def read() -> httpx.Response:
        return await admin.get(f"/v1/users/{user_id}", params={"consistent_with": receipt["consistency_token"]})

    ok(await eventually(read, 10, f"user {user_id} projected", done=lambda response: response.status_code != 404))


async def test_one_challenge_opens_one_session_even_with_many_codes_at_once(admin, portal, clock) -> None:
    _, email = await new_user(admin, enrollment_days=7)
    _, completed = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    challenge = (await sign_in(portal, email))["challenge"]
    answers = await asyncio.gather(*(portal.post("/v1/portal/verify", json={"challenge": challenge, "code": code})
                                     for code in completed["recovery_codes"][:5]))
    sessions = [answer.json()["session"] for answer in answers if answer.status_code == 200]
    assert len(sessions) == 1, [answer.text for answer in answers]
    assert Counter(answer.json()["code"] for answer in answers if answer.status_code != 200) == {"invalid_challenge": 4}

    again = await portal.post("/v1/portal/verify",
                              json={"challenge": challenge, "code": completed["recovery_codes"][6]})
    problem(again, 401, "invalid_challenge")


async def test_a_challenge_from_before_an_mfa_reset_is_refused(stack, admin, portal) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    stale = (await sign_in(portal, email))["challenge"]
    await _projected(admin, user_id, ok(await admin.post(f"/v1/users/{user_id}/mfa/reset",
                                                         json={"enrollment_days": 7})))
    refused = await portal.post("/v1/portal/dismiss-prompt", json={"challenge": stale})
    assert "changed" in problem(refused, 401, "invalid_challenge")["detail"]
    assert await _events(stack, user_id, "EnrollmentPromptDismissed") == 0
    fresh = (await sign_in(portal, email))["challenge"]
    assert ok(await portal.post("/v1/portal/dismiss-prompt", json={"challenge": fresh}))["session"]


async def test_a_challenge_from_before_the_user_was_deleted_is_refused_at_once(stack, admin, portal) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    stale = (await sign_in(portal, email))["challenge"]
    ok(await admin.delete(f"/v1/users/{user_id}"))  # no waiting for the projection: identity is asked
    problem(await portal.post("/v1/portal/setup/begin", json={"challenge": stale}), 401, "invalid_challenge")
    assert await _events(stack, user_id, "TOTPSecretIssued") == 0


async def test_sessions_end_when_mfa_becomes_required(admin, portal, clock) -> None:
    user_id, email = await new_user(admin)
    session = (await sign_in(portal, email))["session"]
    await _projected(admin, user_id, ok(await admin.post(f"/v1/users/{user_id}/mfa/require",
                                                         json={"enrollment_days": 3})))
    problem(await portal.post("/v1/portal/session", json={"session": session}), 401, "invalid_session")
    assert (await sign_in(portal, email))["outcome"] == "enrollment_prompt"
