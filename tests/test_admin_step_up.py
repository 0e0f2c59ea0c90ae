"""Admins as an attacker inside would try them: a session from a password alone, an API key minting
more keys, a console left open, keys that live forever, sessions nobody can end.

Every admin signs in to the admin console with a code (ADMIN_MFA_REQUIRED, on by default); minting
an API key needs an admin session whose code is at most STEP_UP_SECONDS (300) old; keys expire and
are listed; an admin ends every session of a user or another admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from fault_tools import eventually, schema
from portal_flows import (
    ADMIN_PORTAL,
    PASSWORD,
    STEP,
    bearer,
    code_now,
    console_session,
    new_admin,
    new_user,
    ok,
    problem,
    set_up,
    sign_in,
)

STEP_UP = timedelta(seconds=300)
KEY_CACHE_SECONDS = 10  # the gateway remembers a verified key for 5 s (auth.py); twice that to see it refused


async def key_rows(stack) -> int:
    async with schema(stack, "identity") as conn:
        return await conn.fetchval("SELECT count(*) FROM api_keys")


async def session_rows(stack, principal_id: str) -> int:
    async with schema(stack, "gateway") as conn:
        return await conn.fetchval("SELECT count(*) FROM sessions WHERE principal_id = $1", uuid.UUID(principal_id))


async def mfa_events(stack, aggregate_id: str) -> int:
    async with schema(stack, "mfa") as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1", aggregate_id)


async def identity_events(stack, aggregate_id: str) -> list[tuple[str, str]]:
    async with schema(stack, "identity") as conn:
        rows = await conn.fetch("SELECT type, actor FROM events WHERE aggregate_id = $1 ORDER BY aggregate_version",
                                aggregate_id)
    return [(row["type"], row["actor"]) for row in rows]


@pytest.fixture(scope="module")
def bootstrap_gateway(stack) -> Iterator[str]:
    """A gateway process started with ADMIN_MFA_REQUIRED=false, as for the first admin's bootstrap."""
    stack.start_replica("gateway", "gateway-bootstrap", {"ADMIN_MFA_REQUIRED": "false"})
    stack.wait_for_group("gateway", members=2)
    try:
        yield "gateway-bootstrap"
    finally:
        stack.take_down("gateway-bootstrap")
        stack.wait_for_group("gateway", members=1)


async def test_an_admin_without_mfa_gets_no_session_from_a_password_alone(stack, admin, console, portal) -> None:
    admin_id, email, _ = await new_admin(console)
    ok(await admin.post(f"/v1/admins/{admin_id}/mfa/require", json={"enrollment_days": 7}))

    first = await sign_in(portal, email, prefix=ADMIN_PORTAL)
    assert (first["outcome"], first["session"]) == ("setup_required", None), first
    # The enrollment period an admin was given does not make the prompt dismissable.
    problem(await portal.post(f"{ADMIN_PORTAL}/dismiss-prompt", json={"challenge": first["challenge"]}),
            401, "invalid_challenge")
    assert await session_rows(stack, admin_id) == 0


async def test_a_session_opened_without_a_code_is_refused_where_every_admin_must_use_mfa(
        stack, admin, console, portal, bootstrap_gateway, gateway_as) -> None:
    admin_id, email, _ = await new_admin(console)
    async with httpx.AsyncClient(base_url=stack.url(bootstrap_gateway), timeout=30,
                                 headers=portal.headers) as bootstrap_portal:
        opened = await sign_in(bootstrap_portal, email, prefix=ADMIN_PORTAL)
        assert opened["outcome"] == "signed_in", opened
        async with httpx.AsyncClient(base_url=stack.url(bootstrap_gateway), timeout=30,
                                     headers={"Authorization": f"Bearer {opened['session']}"}) as bootstrap_console:
            ok(await bootstrap_console.get("/v1/users", params={"limit": 1}))  # the switch is off there
            # Even there a password alone mints no key: no code was ever checked for this session.
            problem(await bootstrap_console.post("/v1/api-keys", json={"role": "admin", "name": "bootstrap"}),
                    403, "step_up_required")

    password_only = bearer(gateway_as, opened["session"])
    before = await identity_events(stack, admin_id)
    problem(await password_only.get("/v1/users", params={"limit": 1}), 401, "admin_mfa_required")
    problem(await password_only.post("/v1/users", json={"email": f"by-{email}", "name": "Made",
                                                        "password": PASSWORD}), 401, "admin_mfa_required")
    # Nor does it lead anywhere through the console's own steps: no step-up, no session info.
    problem(await portal.post(f"{ADMIN_PORTAL}/session", json={"session": opened["session"]}),
            401, "admin_mfa_required")
    problem(await portal.post(f"{ADMIN_PORTAL}/step-up", json={"session": opened["session"], "code": "123456"}),
            401, "admin_mfa_required")
    assert await identity_events(stack, admin_id) == before


async def test_an_admin_api_key_cannot_make_an_admin_or_take_one_over(stack, admin, console) -> None:
    """Otherwise a leaked key makes an admin of its own (or resets a real one's MFA), sets up MFA on it and
    mints keys from its console."""
    admin_id, _, _ = await new_admin(console)
    before = (await identity_events(stack, admin_id), await mfa_events(stack, f"admin_portal:{admin_id}"))
    problem(await admin.post("/v1/admins", json={"email": f"mine-{uuid.uuid4().hex[:8]}@example.com",
                                                 "name": "Mine", "password": PASSWORD}), 403, "step_up_required")
    for action, body in (("reset", {"enrollment_days": 7}), ("remove-requirement", None)):
        problem(await admin.post(f"/v1/admins/{admin_id}/mfa/{action}", json=body), 403, "step_up_required")
    assert (await identity_events(stack, admin_id), await mfa_events(stack, f"admin_portal:{admin_id}")) == before


async def test_minting_an_api_key_needs_a_code_from_the_last_few_minutes(stack, admin, console, portal, gateway_as,
                                                                         clock) -> None:
    _, email, _ = await new_admin(console)
    key, session = await console_session(portal, email, clock)
    own_console = bearer(gateway_as, session)
    keys = await key_rows(stack)

    problem(await admin.post("/v1/api-keys", json={"role": "admin", "name": "from a key"}), 403, "step_up_required")
    clock.advance(STEP_UP + STEP)
    problem(await own_console.post("/v1/api-keys", json={"role": "admin", "name": "stale"}), 403, "step_up_required")
    problem(await portal.post(f"{ADMIN_PORTAL}/step-up", json={"session": session, "code": "000000"}),
            401, "invalid_code")
    problem(await own_console.post("/v1/api-keys", json={"role": "admin", "name": "after a wrong code"}),
            403, "step_up_required")
    problem(await portal.post("/v1/portal/step-up", json={"session": session, "code": code_now(key, clock)}),
            404, "not_found")  # the user portal has no such step
    assert await key_rows(stack) == keys

    stepped = ok(await portal.post(f"{ADMIN_PORTAL}/step-up", json={"session": session, "code": code_now(key, clock)}))
    assert abs(datetime.fromisoformat(stepped["mfa_verified_at"]) - clock.now()) < STEP
    issued = ok(await own_console.post("/v1/api-keys", json={"role": "auditor", "name": "stepped up"}))
    lifetime = datetime.fromisoformat(issued["expires_at"]) - clock.now()
    assert timedelta(days=89) < lifetime <= timedelta(days=90), lifetime
    problem(await portal.post(f"{ADMIN_PORTAL}/step-up", json={"session": session, "code": code_now(key, clock)}),
            401, "code_already_used")


async def test_api_keys_expire_are_listed_and_are_revoked_and_go_with_the_admin_who_minted_them(
        stack, admin, console, portal, gateway_as, clock) -> None:
    keys = await key_rows(stack)
    problem(await console.post("/v1/api-keys", json={"role": "auditor", "name": "too long", "expires_in_days": 366}),
            422, "validation_error")
    assert await key_rows(stack) == keys

    short = ok(await console.post("/v1/api-keys", json={"role": "auditor", "name": "one day", "expires_in_days": 1}))
    revoked = ok(await console.post("/v1/api-keys", json={"role": "auditor", "name": "to revoke"}))
    leaver_id, leaver_email, _ = await new_admin(console)
    orphaned = ok(await bearer(gateway_as, (await console_session(portal, leaver_email, clock))[1]).post(
        "/v1/api-keys", json={"role": "admin", "name": "left behind"}))
    clients = [bearer(gateway_as, issued["key"]) for issued in (short, revoked, orphaned)]
    for client in clients:
        ok(await client.get("/v1/users", params={"limit": 1}))

    ok(await admin.delete(f"/v1/api-keys/{revoked['key_id']}"))
    ok(await admin.delete(f"/v1/admins/{leaver_id}"))
    clock.advance(timedelta(days=1, minutes=1))
    for client in clients:
        await eventually(lambda c=client: c.get("/v1/users", params={"limit": 1}), KEY_CACHE_SECONDS,
                         "the key is refused", done=lambda r: r.status_code == 401)
        problem(await client.get("/v1/users", params={"limit": 1}), 401, "unauthenticated")

    listed = {item["key_id"]: item for item in ok(await gateway_as("admin").get("/v1/api-keys",
                                                                                 params={"limit": 500}))["items"]}
    assert [listed[issued["key_id"]]["status"] for issued in (short, revoked, orphaned)] == [
        "expired", "revoked", "creator_deleted"]
    assert listed[orphaned["key_id"]]["created_by"] == f"admin:{leaver_id}"
    assert datetime.fromisoformat(listed[short["key_id"]]["expires_at"]) == datetime.fromisoformat(short["expires_at"])
    assert set(listed[short["key_id"]]) == {"key_id", "role", "system_id", "name", "created_at", "created_by",
                                            "expires_at", "status"}
    expired = ok(await gateway_as("admin").get("/v1/api-keys", params={"status": "expired", "limit": 500}))["items"]
    assert short["key_id"] in {k["key_id"] for k in expired} and {k["status"] for k in expired} == {"expired"}
    problem(await gateway_as("admin").get("/v1/api-keys", params={"status": "lost"}), 422, "validation_error")
    problem(await gateway_as("auditor").get("/v1/api-keys"), 403, "forbidden")


async def test_an_admin_ends_every_session_of_a_user_and_the_challenges_taken_before(stack, admin, portal,
                                                                                   clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    key, first = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)
    second = ok(await portal.post("/v1/portal/verify", json={"challenge": (await sign_in(portal, email))["challenge"],
                                                             "code": code_now(key, clock)}))
    clock.advance(STEP)
    pending = (await sign_in(portal, email))["challenge"]

    ok(await admin.delete(f"/v1/users/{user_id}/sessions"))
    for session in (first["session"], second["session"]):
        problem(await portal.post("/v1/portal/session", json={"session": session}), 401, "invalid_session")
    problem(await portal.post("/v1/portal/verify", json={"challenge": pending, "code": code_now(key, clock)}),
            401, "invalid_challenge")
    assert (await identity_events(stack, user_id))[-1] == ("UserSessionsEnded", f"api_key:{admin_key_id(admin)}")

    clock.advance(STEP)
    again = ok(await portal.post("/v1/portal/verify", json={"challenge": (await sign_in(portal, email))["challenge"],
                                                            "code": code_now(key, clock)}))
    ok(await portal.post("/v1/portal/session", json={"session": again["session"]}))


async def test_an_admin_ends_every_session_of_an_admin_and_only_of_the_kind_named(stack, admin, console, portal,
                                                                                gateway_as, clock) -> None:
    admin_id, email, _ = await new_admin(console)
    _, session = await console_session(portal, email, clock)
    user_id, _ = await new_user(admin)
    before = await identity_events(stack, user_id)

    problem(await admin.delete(f"/v1/admins/{user_id}/sessions"), 404, "admin_not_found")
    problem(await admin.delete(f"/v1/users/{admin_id}/sessions"), 404, "user_not_found")
    problem(await admin.delete(f"/v1/users/{uuid.uuid4()}/sessions"), 404, "user_not_found")
    ok(await bearer(gateway_as, session).get("/v1/users", params={"limit": 1}))
    assert await identity_events(stack, user_id) == before

    ok(await admin.delete(f"/v1/admins/{admin_id}/sessions"))
    problem(await portal.post(f"{ADMIN_PORTAL}/session", json={"session": session}), 401, "invalid_session")
    problem(await bearer(gateway_as, session).get("/v1/users", params={"limit": 1}), 401, "unauthenticated")


async def test_resetting_an_admins_mfa_ends_their_sessions_at_once(stack, admin, console, portal, gateway_as,
                                                                  clock) -> None:
    """Not only once the projector gets there (the event goes through mfa's outbox and Kafka first): a
    stolen, stepped-up session must not mint keys meanwhile. Asked right after the reset's answer."""
    admin_id, email, _ = await new_admin(console)
    _, session = await console_session(portal, email, clock)
    stolen = bearer(gateway_as, session)
    ok(await stolen.get("/v1/users", params={"limit": 1}))

    ok(await console.post(f"/v1/admins/{admin_id}/mfa/reset", json={"enrollment_days": 7}))
    problem(await stolen.post("/v1/api-keys", json={"role": "admin", "name": "persistence"}), 401, "unauthenticated")
    problem(await portal.post(f"{ADMIN_PORTAL}/session", json={"session": session}), 401, "invalid_session")


def admin_key_id(admin: httpx.AsyncClient) -> str:
    """The id in the admin API key the `admin` client calls with (mfp_<id hex>_<secret>)."""
    return str(uuid.UUID(hex=admin.headers["Authorization"].removeprefix("Bearer mfp_").split("_")[0]))
