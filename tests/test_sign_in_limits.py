"""Limits per source and overall on the public sign-in routes, attacked on loopback.

The stack's own processes run with limits no test reaches (the suite signs in a lot, all from
127.0.0.1). These tests start processes of their own beside them, with tight limits:

- `gateway-limits` trusts no proxy and lets one sign-in and one challenge step a minute through per
  source; it forwards to the stack's identity.
- `identity-limits` hashes with identity's production argon2 cost on one thread with two sign-ins
  waiting (so a flood fills it), and refuses a source after SPRAY_LIMIT failed passwords.
- `gateway-proxied` trusts 127.0.0.1 as its proxy, so X-Forwarded-For names the client and one test
  can play many clients; it forwards to `identity-limits`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest

from fault_tools import schema
from mfaplane_identity.settings import IdentitySettings
from portal_flows import PASSWORD, new_user, ok, problem

PROXIED_PER_SOURCE = 10
SPRAY_LIMIT = 3
SPRAY_WINDOW = timedelta(minutes=15)
FLOOD = 150
PRODUCTION_ARGON2 = {variable: str(IdentitySettings.model_fields[variable.lower()].default)
                     for variable in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST_KIB", "ARGON2_PARALLELISM")}


@pytest.fixture(scope="module")
def limited(stack) -> Iterator[None]:
    stack.start_replica("identity", "identity-limits", {
        **PRODUCTION_ARGON2, "ARGON2_THREADS": "1", "ARGON2_QUEUE": "2",
        "SOURCE_MAX_PASSWORD_FAILURES": str(SPRAY_LIMIT),
        "SOURCE_FAILURE_WINDOW_SECONDS": str(int(SPRAY_WINDOW.total_seconds()))})
    stack.start_replica("gateway", "gateway-limits", {
        "SIGN_IN_PER_MINUTE_PER_SOURCE": "1", "CHALLENGE_PER_MINUTE_PER_SOURCE": "1"})
    stack.start_replica("gateway", "gateway-proxied", {
        "TRUSTED_PROXIES": "127.0.0.1/32", "SIGN_IN_PER_MINUTE_PER_SOURCE": str(PROXIED_PER_SOURCE),
        "IDENTITY_URL": stack.url("identity-limits")})
    stack.wait_for_group("gateway", members=3)
    try:
        yield
    finally:
        for name in ("gateway-proxied", "gateway-limits", "identity-limits"):
            stack.take_down(name)
        stack.wait_for_group("gateway", members=1)


@pytest.fixture
async def portal_at(stack, api_keys, limited) -> AsyncIterator:
    """A portal client of one of the limited gateways."""
    clients: list[httpx.AsyncClient] = []

    def make(name: str) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(base_url=stack.url(name), timeout=30,
                                         headers={"Authorization": f"Bearer {api_keys['portal']}"}))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def address() -> str:
    """A client address of its own (an IPv6 /64 no other test uses)."""
    block = uuid.uuid4().hex
    return f"2001:db8:{block[:4]}:{block[4:8]}::1"


async def attempt(portal: httpx.AsyncClient, email: str, password: str = "a guess", forwarded_for: str | None = None,
                  prefix: str = "/v1/portal") -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await portal.post(f"{prefix}/sign-in", json={"email": email, "password": password}, headers=headers)


def unknown_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.com"


def refused(response: httpx.Response, code: str) -> dict:
    """A 429 problem `code` that says when to retry, in its body and in Retry-After."""
    body = problem(response, 429, code)
    assert response.headers["Retry-After"] == str(body["retry_after"]) and body["retry_after"] > 0, response.headers
    return body


async def nothing_written_for(stack, user_id: str, email: str) -> None:
    async with schema(stack, "identity") as identity:
        assert await identity.fetchval("SELECT count(*) FROM password_failures WHERE email = lower($1)", email) == 0
    async with schema(stack, "gateway") as gateway:
        assert await gateway.fetchval("SELECT count(*) FROM sessions WHERE principal_id = $1",
                                      uuid.UUID(user_id)) == 0


async def test_a_burst_from_one_address_is_refused_before_any_password_is_checked(stack, admin, portal_at) -> None:
    victim_id, victim = await new_user(admin)
    portal = portal_at("gateway-limits")
    burst = await asyncio.gather(*(attempt(portal, unknown_email()) for _ in range(10)))
    assert set(Counter(answer.status_code for answer in burst)) <= {401, 429}
    for answer in burst:
        if answer.status_code == 429:
            assert refused(answer, "rate_limited")["retry_after"] <= 60

    refused(await attempt(portal, victim), "rate_limited")
    refused(await attempt(portal, victim, PASSWORD), "rate_limited")  # the right password too: never checked
    refused(await attempt(portal, victim, PASSWORD, prefix="/v1/admin-portal"), "rate_limited")  # one bucket
    await nothing_written_for(stack, victim_id, victim)


async def test_the_challenge_steps_have_a_bucket_per_source_too(portal_at) -> None:
    portal = portal_at("gateway-limits")
    steps = [portal.post("/v1/portal/verify", json={"challenge": "not a challenge", "code": "123456"})
             for _ in range(5)]
    answers = await asyncio.gather(*steps)
    assert Counter(answer.status_code for answer in answers)[429] >= 4
    for answer in answers:
        if answer.status_code == 429:
            refused(answer, "rate_limited")


async def test_a_system_agent_guessing_passwords_meets_the_sign_in_bucket(stack, admin, limited) -> None:
    """A stolen agent key used to try passwords through the decision endpoint: its email and password form
    costs a hash like a sign-in and is refused like one; the login-name form (no password) is not."""
    host = ok(await admin.post("/v1/systems", json={"name": f"limits-{uuid.uuid4().hex[:6]}", "kind": "linux"}))["id"]
    key = stack.create_api_key("system_agent", "limits agent", host)
    async with httpx.AsyncClient(base_url=stack.url("gateway-limits"), timeout=30,
                                 headers={"Authorization": f"Bearer {key}"}) as agent:
        guesses = [agent.post(f"/v1/systems/{host}/authorize", json={"email": unknown_email(), "password": "a guess"})
                   for _ in range(5)]
        answers = await asyncio.gather(*guesses)
        assert Counter(answer.status_code for answer in answers)[429] >= 4
        by_name = await agent.post(f"/v1/systems/{host}/authorize", json={"login_name": "nobody_here"})
        assert ok(by_name) == {"decision": "deny", "reason": "unknown_login_name"}


async def test_x_forwarded_for_from_a_peer_that_is_no_trusted_proxy_is_ignored(portal_at) -> None:
    portal = portal_at("gateway-limits")
    await asyncio.gather(*(attempt(portal, unknown_email()) for _ in range(3)))  # this address's minute, spent
    for _ in range(5):
        refused(await attempt(portal, unknown_email(), forwarded_for=address()), "rate_limited")


async def test_behind_a_trusted_proxy_the_hop_it_appended_is_the_client(portal_at) -> None:
    portal = portal_at("gateway-proxied")
    client, other = address(), address()
    await asyncio.gather(*(attempt(portal, unknown_email(), forwarded_for=client)
                           for _ in range(2 * PROXIED_PER_SOURCE)))
    refused(await attempt(portal, unknown_email(), forwarded_for=client), "rate_limited")
    # The client writing another address first does not make it another client: the proxy appended its own.
    refused(await attempt(portal, unknown_email(), forwarded_for=f"{other}, {client}"), "rate_limited")
    problem(await attempt(portal, unknown_email(), forwarded_for=other), 401, "invalid_credentials")


async def test_a_real_sign_in_during_a_flood_of_random_emails_is_answered_never_with_503(
        admin, portal_at) -> None:
    """A flood from many addresses (a botnet) fills identity's hashing queue; what does not fit is refused
    at once, and a real user signing in meanwhile is either signed in or told to retry, not kept waiting
    until the gateway gives up."""
    _, email = await new_user(admin)
    portal = portal_at("gateway-proxied")
    flood = [asyncio.ensure_future(attempt(portal, unknown_email(), forwarded_for=address())) for _ in range(FLOOD)]
    for answer in asyncio.as_completed(flood):
        if (await answer).status_code == 429:
            break  # identity's queue is full now, and the rest of the flood still in it
    real = await attempt(portal, email, PASSWORD, forwarded_for=address())
    answers = await asyncio.gather(*flood)

    if real.status_code == 429:
        refused(real, "server_busy")
    else:
        assert real.status_code == 200 and real.json()["outcome"] == "signed_in", real.text
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {401, 429} and statuses[429] > 0, statuses
    for answer in answers:
        if answer.status_code == 429:
            refused(answer, "server_busy")


async def test_one_password_sprayed_across_accounts_from_one_source_is_refused_after_the_limit(
        stack, admin, portal_at, clock) -> None:
    portal = portal_at("gateway-proxied")
    sprayer = address()
    targets = [(await new_user(admin))[1] for _ in range(SPRAY_LIMIT - 1)] + [unknown_email()]
    for email in targets:
        problem(await attempt(portal, email, "Summer2026!", forwarded_for=sprayer), 401, "invalid_credentials")

    victim_id, victim = await new_user(admin)
    known = refused(await attempt(portal, victim, "Summer2026!", forwarded_for=sprayer), "source_throttled")
    unknown = refused(await attempt(portal, unknown_email(), "Summer2026!", forwarded_for=sprayer), "source_throttled")
    assert {**known, "detail": "", "retry_after": 0} == {**unknown, "detail": "", "retry_after": 0}
    assert 0 < known["retry_after"] <= SPRAY_WINDOW.total_seconds()
    refused(await attempt(portal, victim, PASSWORD, forwarded_for=sprayer), "source_throttled")
    await nothing_written_for(stack, victim_id, victim)

    elsewhere = await attempt(portal, victim, PASSWORD, forwarded_for=address())
    assert elsewhere.status_code == 200 and elsewhere.json()["outcome"] == "signed_in", elsewhere.text
    clock.advance(SPRAY_WINDOW)
    later = await attempt(portal, victim, PASSWORD, forwarded_for=sprayer)
    assert later.status_code == 200 and later.json()["outcome"] == "signed_in", later.text
