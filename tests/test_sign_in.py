"""Sign-in to the user portal, the admin portal and protected systems, end to end (rules 7, 10, 11)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import asyncpg
import httpx
import pyotp

from fault_tools import schema
from mfaplane_contracts.mfa_events import enrollment_id
from mfaplane_identity.settings import IdentitySettings
from mfaplane_mfa.enrollment_commands import replay
from portal_flows import PASSWORD, code_now, new_user, ok, problem, set_up, sign_in
from trust_tools import SignedAs, direct

STEP = timedelta(seconds=30)


async def test_a_user_without_required_mfa_is_signed_in(admin, portal) -> None:
    _, email = await new_user(admin)
    answer = await sign_in(portal, email)
    assert answer["outcome"] == "signed_in"
    session = ok(await portal.post("/v1/portal/session", json={"session": answer["session"]}))
    assert session["kind"] == "user"


async def test_wrong_password_and_unknown_email_get_the_same_answer(admin, portal) -> None:
    _, email = await new_user(admin)
    wrong = await portal.post("/v1/portal/sign-in", json={"email": email, "password": "not the password"})
    unknown = await portal.post("/v1/portal/sign-in", json={"email": "nobody@example.com", "password": PASSWORD})
    assert problem(wrong, 401, "invalid_credentials") == problem(unknown, 401, "invalid_credentials")


async def test_password_guessing_is_throttled_per_email_and_a_success_starts_the_count_again(
        admin, portal, clock) -> None:
    _, email = await new_user(admin)
    settings = IdentitySettings.model_fields
    allowed, window = (settings[name].default for name in ("password_max_failures", "password_failure_window_seconds"))

    async def attempt(password: str, address: str = email) -> httpx.Response:
        return await portal.post("/v1/portal/sign-in", json={"email": address, "password": password})

    for _ in range(allowed - 1):
        problem(await attempt("a guess"), 401, "invalid_credentials")
    assert (await sign_in(portal, email))["outcome"] == "signed_in"  # and the failures are forgotten
    for _ in range(allowed):
        problem(await attempt("a guess"), 401, "invalid_credentials")
    refused = problem(await attempt(PASSWORD), 429, "too_many_attempts")  # even the right password
    assert 0 < refused["retry_after"] <= window
    unknown = "nobody-" + email
    for _ in range(allowed):
        problem(await attempt("a guess", unknown), 401, "invalid_credentials")
    problem(await attempt("a guess", unknown), 429, "too_many_attempts")

    clock.advance(timedelta(seconds=refused["retry_after"]))
    assert (await sign_in(portal, email))["outcome"] == "signed_in"


async def test_parallel_password_guesses_for_one_email_are_never_evaluated_past_the_limit(stack, admin) -> None:
    """150 wrong guesses at once, straight to identity (as several gateway replicas would send them): each
    takes its slot before argon2 runs, so exactly the limit are evaluated; then the right password is
    refused too."""
    _, email = await new_user(admin)
    allowed = IdentitySettings.model_fields["password_max_failures"].default
    async with direct(stack, "identity", auth=SignedAs(stack, "identity")) as identity:
        async def attempt(password: str) -> httpx.Response:
            return await identity.post("/authenticate", json={"kind": "user", "email": email, "password": password})

        answers = await asyncio.gather(*(attempt(f"guess {i}") for i in range(150)))
        assert Counter(answer.status_code for answer in answers) == {401: allowed, 429: 150 - allowed}
        problem(await attempt(PASSWORD), 429, "too_many_attempts")
    async with schema(stack, "identity") as db:
        assert await db.fetchval("SELECT failures FROM password_failures WHERE email = lower($1)", email) == allowed


async def test_enrollment_prompt_dismiss_then_setup_then_code(admin, portal, clock) -> None:
    _, email = await new_user(admin, enrollment_days=7)
    prompt = await sign_in(portal, email)
    assert (prompt["outcome"], prompt["days_remaining"]) == ("enrollment_prompt", 7)

    dismissed = ok(await portal.post("/v1/portal/dismiss-prompt", json={"challenge": prompt["challenge"]}))
    assert (dismissed["outcome"], dismissed["days_remaining"]) == ("signed_in", 7)
    assert dismissed["deadline"] == prompt["deadline"] is not None, "the prompt's deadline, wherever the prompt is"

    clock.advance(timedelta(days=2))
    prompt = await sign_in(portal, email)
    assert prompt["days_remaining"] == 5
    key, completed = await set_up(portal, prompt["challenge"], clock)
    assert completed["outcome"] == "signed_in" and len(completed["recovery_codes"]) == 10

    clock.advance(STEP)
    step_one = await sign_in(portal, email)
    assert step_one["outcome"] == "mfa_required" and step_one["session"] is None
    code = code_now(key, clock)
    signed_in = ok(await portal.post("/v1/portal/verify", json={"challenge": step_one["challenge"], "code": code}))
    assert signed_in["outcome"] == "signed_in"
    again = await portal.post("/v1/portal/verify", json={"challenge": step_one["challenge"], "code": code})
    problem(again, 401, "invalid_challenge")  # one challenge, one session
    replayed = await portal.post("/v1/portal/verify",
                                 json={"challenge": (await sign_in(portal, email))["challenge"], "code": code})
    problem(replayed, 401, "code_already_used")


async def test_required_with_no_period_must_set_up_first(admin, portal) -> None:
    _, email = await new_user(admin, enrollment_days=None)
    answer = await sign_in(portal, email)
    assert answer["outcome"] == "setup_required" and answer["session"] is None
    dismiss = await portal.post("/v1/portal/dismiss-prompt", json={"challenge": answer["challenge"]})
    problem(dismiss, 401, "invalid_challenge")


async def test_expired_user_is_locked_out_until_extended(admin, portal, clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=1)
    clock.advance(timedelta(days=1, minutes=1))
    locked = await sign_in(portal, email)
    assert locked["outcome"] == "locked_out" and locked["challenge"] is None and locked["session"] is None
    assert "administrator" in locked["reason"]
    ok(await admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 3}))
    again = await sign_in(portal, email)
    assert (again["outcome"], again["days_remaining"]) == ("enrollment_prompt", 3)


async def test_reset_user_signs_in_without_code_is_prompted_and_loses_old_sessions(admin, portal, clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    prompt = await sign_in(portal, email)
    _, completed = await set_up(portal, prompt["challenge"], clock)
    reset = ok(await admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 2}))
    answer = await sign_in(portal, email)
    assert (answer["outcome"], answer["days_remaining"]) == ("enrollment_prompt", 2)
    # The gateway ends sessions when it projects the reset: read it back first.
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": reset["consistency_token"]}))
    problem(await portal.post("/v1/portal/session", json={"session": completed["session"]}), 401, "invalid_session")
    assert (await sign_in(portal, email))["session"] is None, "a new sign-in still goes through the prompt"


async def test_recovery_code_works_once(admin, portal, clock) -> None:
    _, email = await new_user(admin, enrollment_days=7)
    _, completed = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    recovery = completed["recovery_codes"][3].lower()
    first = await sign_in(portal, email)
    ok(await portal.post("/v1/portal/verify", json={"challenge": first["challenge"], "code": recovery}))
    second = await sign_in(portal, email)
    problem(await portal.post("/v1/portal/verify", json={"challenge": second["challenge"], "code": recovery}),
            401, "invalid_code")


async def test_wrong_codes_are_throttled(admin, portal, clock) -> None:
    _, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    challenge = (await sign_in(portal, email))["challenge"]
    for _ in range(5):
        problem(await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": "000000"}),
                401, "invalid_code")
    clock.advance(STEP)
    refused = await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": code_now(key, clock)})
    throttled = problem(refused, 429, "throttled")
    assert 0 < throttled["retry_after"] <= 15 * 60
    assert refused.headers["Retry-After"] == str(throttled["retry_after"])  # where HTTP clients look for it


async def test_systems_ask_for_a_code_only_from_users_who_set_up(admin, portal, agent_of, clock) -> None:
    linux = ok(await admin.post("/v1/systems", json={"name": "build-01", "kind": "linux"}))["aggregate_id"]
    off_receipt = ok(await admin.post("/v1/systems", json={"name": "laptop-7", "kind": "macos"}))
    off = off_receipt["aggregate_id"]
    switched = ok(await admin.put(f"/v1/systems/{linux}/mfa", json={"enabled": True}))
    ok(await admin.get("/v1/systems", params={"consistent_with": [switched["consistency_token"],
                                                                   off_receipt["consistency_token"]]}))
    _, without_setup = await new_user(admin, enrollment_days=7)
    _, with_setup = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, with_setup))["challenge"], clock)
    agents = {linux: agent_of(linux), off: agent_of(off)}

    async def decide(system: str, email: str, code: str | None = None) -> dict:
        return ok(await agents[system].post(f"/v1/systems/{system}/authorize",
                                            json={"email": email, "password": PASSWORD, "code": code}))

    assert (await decide(linux, without_setup))["decision"] == "allow"
    assert (await decide(linux, with_setup))["decision"] == "code_required"
    clock.advance(STEP)
    assert (await decide(linux, with_setup, code_now(key, clock)))["decision"] == "allow"
    assert (await decide(linux, with_setup, "123456"))["decision"] == "deny"
    assert (await decide(off, with_setup))["decision"] == "allow"


async def test_admin_portal_has_its_own_enrollment(admin, console, portal, gateway_as, clock) -> None:
    email = f"admin-{pyotp.random_base32()[:8].lower()}@example.com"
    admin_id = ok(await console.post("/v1/admins", json={"email": email, "name": "Root", "password": PASSWORD}))[
        "aggregate_id"]
    # Every admin uses MFA: not set up, it must be set up first, enrollment period or not.
    assert (await sign_in(portal, email, prefix="/v1/admin-portal"))["outcome"] == "setup_required"
    problem(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD}),
            401, "invalid_credentials")
    ok(await admin.post(f"/v1/admins/{admin_id}/mfa/require", json={"enrollment_days": 3}))
    prompt = await sign_in(portal, email, prefix="/v1/admin-portal")
    assert prompt["outcome"] == "setup_required", prompt
    problem(await portal.post("/v1/portal/setup/begin", json={"challenge": prompt["challenge"]}),
            401, "invalid_challenge")
    key, _ = await set_up(portal, prompt["challenge"], clock, prefix="/v1/admin-portal")
    clock.advance(STEP)
    step_one = await sign_in(portal, email, prefix="/v1/admin-portal")
    assert step_one["outcome"] == "mfa_required"
    signed_in = ok(await portal.post("/v1/admin-portal/verify", json={"challenge": step_one["challenge"],
                                                                       "code": code_now(key, clock)}))

    # The admin's session works as an admin credential for the admin API (what the admin console uses).
    as_admin = gateway_as(None)
    as_admin.headers["Authorization"] = f"Bearer {signed_in['session']}"
    created = ok(await as_admin.post("/v1/users", json={"email": f"by-{email}", "name": "Made by admin",
                                                        "password": PASSWORD}))
    assert created["version"] == 1
    user_session = (await sign_in(portal, f"by-{email}"))["session"]
    as_user = gateway_as(None)
    as_user.headers["Authorization"] = f"Bearer {user_session}"
    problem(await as_user.get("/v1/users"), 401, "unauthenticated")


async def test_a_user_who_signs_in_often_is_loaded_from_a_snapshot_and_a_used_code_stays_used(
        stack, admin, portal, clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    async with schema(stack, "mfa") as conn:
        for _ in range(replay.snapshots.every):  # until the last sign-in is in the snapshot, with no event after
            clock.advance(STEP)
            challenge = (await sign_in(portal, email))["challenge"]
            code = code_now(key, clock)
            ok(await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": code}))
            if await _snapshot_is_latest(conn, enrollment_id("user_portal", user_id)):
                break
        else:
            raise AssertionError("no snapshot was taken")

    challenge = (await sign_in(portal, email))["challenge"]
    replayed = await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": code})
    problem(replayed, 401, "code_already_used")  # the last accepted step came from the snapshot
    clock.advance(STEP)
    challenge = (await sign_in(portal, email))["challenge"]
    signed_in = ok(await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": code_now(key, clock)}))
    assert signed_in["outcome"] == "signed_in"


async def _snapshot_is_latest(conn: asyncpg.Connection, aggregate_id: str) -> bool:
    return await conn.fetchval(
        "SELECT max(s.aggregate_version) = (SELECT max(aggregate_version) FROM events WHERE aggregate_id = $1) "
        "FROM snapshots s WHERE s.aggregate_id = $1", aggregate_id) or False
