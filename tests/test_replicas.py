"""Two replicas of every service at once (issue 9, fault 7): no duplicate events, timers or emails.

Each service gets a second process, like a second pod of its deployment: the same schema and
consumer group, its own port. The second gateway forwards to the second identity and mfa
processes, so every process takes requests, and admins and portals call both gateways in turn,
the way a load balancer spreads them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from fault_tools import EXPIRED, REMINDER, REQUIRED, enrollment, eventually, scheduler_events, schema
from invariants import check_and_record, mark
from portal_flows import PASSWORD, code_now, ok, set_up, sign_in

pytestmark = pytest.mark.slow
DAY = timedelta(days=1)
STEP = timedelta(seconds=30)
SETUP_COMPLETE = "MFA setup complete"
CONSUMING = ("mfa", "scheduler", "notifier", "gateway")
USERS = 12


@pytest.fixture
async def gateways(stack, api_keys) -> AsyncIterator[list[dict[str, httpx.AsyncClient]]]:
    """A second process of every service (`<service>-2`), and per gateway an admin and a portal client."""
    await asyncio.to_thread(_start_replicas, stack)
    clients = [
        {role: httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {api_keys[role]}"})
         for role in ("admin", "portal")}
        for url in (stack.url("gateway"), stack.url("gateway-2"))
    ]
    try:
        yield clients
    finally:
        for pair in clients:
            for http in pair.values():
                await http.aclose()
        await asyncio.to_thread(_take_down_replicas, stack)


def _start_replicas(stack) -> None:
    for service in ("identity", "mfa", "scheduler", "notifier"):
        stack.start_replica(service, f"{service}-2")
    stack.start_replica("gateway", "gateway-2", {"IDENTITY_URL": stack.url("identity-2"),
                                                 "MFA_URL": stack.url("mfa-2")})
    for service in CONSUMING:
        stack.wait_for_group(service, members=2)


def _take_down_replicas(stack) -> None:
    for service in ("gateway", "notifier", "scheduler", "mfa", "identity"):
        stack.take_down(f"{service}-2")
    for service in CONSUMING:
        stack.wait_for_group(service, members=1)


async def _new_user(creator: httpx.AsyncClient, requirers: list[httpx.AsyncClient]) -> tuple[str, str]:
    """A user made through one gateway; MFA required (one-day period) through every gateway at once
    with one Idempotency-Key, like a client retrying on another replica: applied once."""
    email = f"replicas-{uuid.uuid4().hex[:10]}@example.com"
    user_id = ok(await creator.post("/v1/users", json={"email": email, "name": "Replica User",
                                                       "password": PASSWORD}))["aggregate_id"]
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(*(
        http.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 1}, headers=headers)
        for http in requirers
    ))
    receipts = [ok(answer) for answer in answers]
    assert sorted(r["duplicate"] for r in receipts) == [False, True], receipts
    assert len({(r["version"], tuple(r["event_ids"])) for r in receipts}) == 1, receipts
    return user_id, email


async def _enroll_across_gateways(first: httpx.AsyncClient, second: httpx.AsyncClient, email: str, clock) -> None:
    """Sign in at one gateway, set up at the other, then a code's second step across both again."""
    key, _ = await set_up(second, (await sign_in(first, email))["challenge"], clock)
    clock.advance(STEP)  # the setup code is used up; the next step needs the next one
    step_one = await sign_in(second, email)
    assert step_one["outcome"] == "mfa_required", step_one
    verified = await first.post("/v1/portal/verify", json={"challenge": step_one["challenge"],
                                                           "code": code_now(key, clock)})
    assert ok(verified)["outcome"] == "signed_in"


async def _event_types(stack, service: str, aggregate_ids: list[str]) -> dict[str, Counter]:
    async with schema(stack, service) as conn:
        rows = await conn.fetch("SELECT aggregate_id, type FROM events WHERE aggregate_id = ANY($1::text[])",
                                aggregate_ids)
    counts: dict[str, Counter] = {a: Counter() for a in aggregate_ids}
    for row in rows:
        counts[row["aggregate_id"]][row["type"]] += 1
    return counts


async def test_two_replicas_of_every_service_make_no_duplicates(stack, gateways, clock) -> None:
    since = await mark(stack)
    mail = since.mail
    admins = [pair["admin"] for pair in gateways]
    users = await asyncio.gather(*(_new_user(admins[i % 2], admins) for i in range(USERS)))
    enrolled, waiting = users[: USERS // 2], users[USERS // 2:]
    portals = [pair["portal"] for pair in gateways]
    for i, (_, email) in enumerate(enrolled):
        await _enroll_across_gateways(portals[i % 2], portals[(i + 1) % 2], email, clock)

    waiting_emails = [e for _, e in waiting]
    # A one-day period: the reminder is due at once, every replica of the scheduler races for it.
    await eventually(lambda: mail.each_got(waiting_emails, REQUIRED, REMINDER), 90, "every required and reminder mail")
    clock.advance(DAY + timedelta(minutes=1))
    await eventually(lambda: mail.each_got(waiting_emails, EXPIRED), 90, "every expiry mail")
    await eventually(lambda: mail.each_got([e for _, e in enrolled], SETUP_COMPLETE), 90, "every setup mail")

    async def listed_everywhere() -> bool:
        for http in admins:
            for user in users:
                status = ok(await http.get(f"/v1/users/{user[0]}"))["status"]
                if status != ("active" if user in enrolled else "expired"):
                    return False
        return True

    await eventually(listed_everywhere, 60, "both gateways list every user in their final status")
    await check_and_record(stack, "two replicas of every service at once",
                           f"{USERS} users made and required through both gateways (each require sent to both "
                           f"with one Idempotency-Key), {USERS // 2} set up across both, the others expired",
                           since)  # waits until idle: a duplicate, if a replica were to make one, is in by then

    identity = await _event_types(stack, "identity", [u for u, _ in users])
    assert all(counts == Counter({"UserCreated": 1}) for counts in identity.values()), identity
    mfa = await _event_types(stack, "mfa", [enrollment(u) for u, _ in users])
    assert all(counts["MFARequired"] == 1 for counts in mfa.values()), mfa
    fired = await scheduler_events(stack, [enrollment(u) for u, _ in waiting])
    assert {key: [kind for kind, _, _ in events] for key, events in fired.items()} == {
        enrollment(u): ["EnrollmentExpiring", "EnrollmentExpired"] for u, _ in waiting}
    assert mail.subjects(waiting_emails) == {e: Counter({REQUIRED: 1, REMINDER: 1, EXPIRED: 1}) for e in waiting_emails}
    # The reminder of a one-day period is due at once: it may go out before the user sets up, once.
    for email, got in mail.subjects([e for _, e in enrolled]).items():
        assert got - Counter({REMINDER: 1}) == Counter({REQUIRED: 1, SETUP_COMPLETE: 1}), (email, got)
        assert got[REMINDER] <= 1, (email, got)
