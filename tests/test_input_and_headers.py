"""Input and headers, attacked on the running stack: malformed cursors and control characters are
refused before anything is read or streamed; an admin's id reaches no user route, and deleting an
admin takes everything of theirs; the users CSV neutralises formulas; answers carrying keys, codes or
sessions are never stored, and no answer is sniffed."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import uuid

import httpx

from fault_tools import eventually, new_users, schema, timers
from portal_flows import (
    ADMIN_PORTAL,
    PASSWORD,
    SHOWN_SECRETS,
    bearer,
    console_session,
    live_admins,
    new_admin,
    new_user,
    ok,
    problem,
    set_up,
    sign_in,
)
from trust_tools import SignedAs, direct

CONTROLS = ["\x00", "a\x00b", "\x07", "\x1b[2J", "tab\t", "line\nbreak", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
NAMED_SEARCHES = [("/v1/users", "q"), ("/v1/users.csv", "q"), ("/v1/users/status-counts", "q"), ("/v1/admins", "q"),
                  ("/v1/audit/events", "actor")]


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


async def identity_events(stack, aggregate_id: str | None = None) -> int:
    async with schema(stack, "identity") as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE $1::text IS NULL OR aggregate_id = $1",
                                   aggregate_id)


def identity_service(stack) -> httpx.AsyncClient:
    """The identity service's own API, called as the gateway calls it: it refuses on its own."""
    return direct(stack, "identity", auth=SignedAs(stack, "identity"))


async def shown(admin: httpx.AsyncClient, path: str) -> dict:
    """What the API shows at `path` once the read model has it."""
    answer = await eventually(lambda: admin.get(path), 20, f"{path} is shown", done=lambda r: r.status_code == 200)
    return answer.json()


async def test_a_cursor_of_another_list_or_of_the_wrong_shape_is_a_400(admin, console) -> None:
    await new_users(admin, 2)
    await new_admin(console)
    await new_admin(console)

    async def next_cursor(path: str) -> str | None:
        return ok(await admin.get(path, params={"limit": 1}))["next_cursor"]

    users = await eventually(lambda: next_cursor("/v1/users"), 20, "a second page of users")
    admins = await eventually(lambda: next_cursor("/v1/admins"), 20, "a second page of admins")
    ok(await admin.get("/v1/users", params={"limit": 1, "cursor": users}))
    ok(await admin.get("/v1/admins", params={"limit": 1, "cursor": admins}))

    principal = str(uuid.uuid4())
    forged = ["%%%", "abcde", "not base64 at all!", _cursor(1), _cursor({"value": "a"}), _cursor([1, principal]),
              _cursor(["a@example.com", principal]), _cursor(["user/email", 1, principal]),
              _cursor(["user/email", ["a"], principal]), _cursor(["user/email", "a\x00", principal]),
              _cursor(["user/deadline", "tomorrow", principal]), _cursor(["user/email", "a", "not-an-id"])]
    attempts = [("/v1/users", {"cursor": admins}), ("/v1/admins", {"cursor": users}),
                ("/v1/users", {"cursor": users, "sort": "deadline"}), ("/v1/users", {"cursor": users, "sort": "name"}),
                *(("/v1/users", {"cursor": c, "sort": sort}) for c in forged for sort in ("email", "deadline"))]
    for path, params in attempts:
        problem(await admin.get(path, params=params), 400, "invalid_cursor")


async def test_control_characters_in_a_search_are_a_400_before_any_list_or_stream(admin) -> None:
    await new_users(admin, 2)
    for path, name in NAMED_SEARCHES:
        for text in CONTROLS:
            refused = problem(await admin.get(path, params={name: text}), 400, "invalid_text")
            assert [error["loc"] for error in refused["errors"]] == [["query", name]]
        assert (await admin.get(path, params={name: "ada"})).status_code == 200  # what a person types works


async def test_a_bulk_action_over_a_search_with_control_characters_is_refused_and_starts_nothing(stack,
                                                                                                  admin) -> None:
    async with schema(stack, "gateway") as conn:
        before = await conn.fetchval("SELECT count(*) FROM bulk_operations")
        for text in CONTROLS:
            problem(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "filter": {"q": text}}),
                    400, "invalid_text")
        assert await conn.fetchval("SELECT count(*) FROM bulk_operations") == before


async def test_names_with_control_characters_are_refused_and_nothing_is_written(stack, admin, console) -> None:
    user_id, _ = await new_user(admin)
    before = await identity_events(stack)
    for name in CONTROLS:
        email = f"ctl-{uuid.uuid4().hex[:10]}@example.com"
        for method, path, body in [("POST", "/v1/users", {"email": email, "name": name, "password": PASSWORD}),
                                   ("POST", "/v1/admins", {"email": email, "name": name, "password": PASSWORD}),
                                   ("PATCH", f"/v1/users/{user_id}", {"name": name}),
                                   ("POST", "/v1/systems", {"name": name, "kind": "linux"}),
                                   ("POST", "/v1/api-keys", {"name": name, "role": "auditor"})]:
            caller = console if path in ("/v1/api-keys", "/v1/admins") else admin  # these need a step-up
            refused = problem(await caller.request(method, path, json=body), 400, "invalid_text")
            assert [error["loc"] for error in refused["errors"]] == [["body", "name"]], (path, name)
    async with identity_service(stack) as identity:
        for path, body in [("/users", {"email": "direct@example.com", "name": "nul\x00", "password": PASSWORD}),
                           ("/admins", {"email": "direct@example.com", "name": "line\u2028", "password": PASSWORD}),
                           ("/systems", {"name": "esc\x1b", "kind": "linux"}),
                           ("/api-keys", {"name": "del\x7f", "role": "auditor"})]:
            problem(await identity.post(path, json=body), 400, "invalid_text")
        problem(await identity.patch(f"/users/{user_id}", json={"name": "bell\x07"}), 400, "invalid_text")
    assert await identity_events(stack) == before
    assert (await shown(admin, f"/v1/users/{user_id}"))["name"] == "Test User"


async def test_an_admins_id_reaches_no_user_route_and_changes_nothing(stack, admin, console, portal) -> None:
    admin_id, email, created = await new_admin(console, "Root Admin")
    user_id, _ = await new_user(admin)
    before = await identity_events(stack, admin_id)

    problem(await admin.get(f"/v1/users/{admin_id}", params={"consistent_with": created}), 404, "user_not_found")
    problem(await admin.patch(f"/v1/users/{admin_id}", json={"name": "Renamed"}), 404, "user_not_found")
    problem(await admin.patch(f"/v1/users/{admin_id}", json={"email": f"x-{email}"}), 404, "user_not_found")
    problem(await admin.delete(f"/v1/users/{admin_id}"), 404, "user_not_found")
    async with identity_service(stack) as identity:
        problem(await identity.patch(f"/users/{admin_id}", json={"name": "Renamed"}), 404, "user_not_found")
        problem(await identity.delete(f"/users/{admin_id}"), 404, "user_not_found")
    problem(await admin.get(f"/v1/admins/{user_id}"), 404, "admin_not_found")
    problem(await admin.delete(f"/v1/admins/{user_id}"), 404, "admin_not_found")

    assert await identity_events(stack, admin_id) == before
    kept = ok(await admin.get(f"/v1/admins/{admin_id}"))
    assert (kept["name"], kept["email"]) == ("Root Admin", email)
    assert [a["id"] for a in ok(await admin.get("/v1/admins", params={"q": email}))["items"]] == [admin_id]
    assert ok(await admin.get("/v1/users", params={"q": email}))["items"] == []
    assert (await shown(admin, f"/v1/users/{user_id}"))["name"] == "Test User"
    still_signs_in = await portal.post(f"{ADMIN_PORTAL}/sign-in", json={"email": email, "password": PASSWORD})
    assert still_signs_in.status_code == 200, still_signs_in.text


async def test_deleting_an_admin_takes_their_credentials_enrollment_keys_timers_and_sessions(
        stack, admin, console, portal, gateway_as, clock) -> None:
    set_up_id, set_up_email, _ = await new_admin(console)
    ok(await admin.post(f"/v1/admins/{set_up_id}/mfa/require", json={"enrollment_days": 7}))
    _, session = await console_session(portal, set_up_email, clock)
    # The other one is enrolling: a key issued but not confirmed, and reminder and expiry timers.
    enrolling_id, enrolling_email, _ = await new_admin(console)
    ok(await admin.post(f"/v1/admins/{enrolling_id}/mfa/require", json={"enrollment_days": 7}))
    prompt = await sign_in(portal, enrolling_email, prefix=ADMIN_PORTAL)
    SHOWN_SECRETS.append(ok(await portal.post(f"{ADMIN_PORTAL}/setup/begin", json={"challenge": prompt["challenge"]}))[
        "key_text"].replace(" ", ""))
    await new_admin(console)  # one stays: the last admin cannot be deleted
    ids = [set_up_id, enrolling_id]
    enrollments = [f"admin_portal:{admin_id}" for admin_id in ids]

    async def key_rows() -> int:
        async with schema(stack, "mfa") as conn:
            return await conn.fetchval("SELECT count(*) FROM totp_secrets WHERE enrollment_id = ANY($1::text[])",
                                       enrollments)

    assert await key_rows() == 2
    await eventually(lambda: timers(stack, enrollments), 20, "the enrolling admin's timers are set")

    deleted = [ok(await admin.delete(f"/v1/admins/{admin_id}")) for admin_id in ids]

    # At once: the session is over, and the password opens nothing.
    problem(await portal.post(f"{ADMIN_PORTAL}/session", json={"session": session}), 401, "invalid_session")
    problem(await bearer(gateway_as, session).get("/v1/users"), 401, "unauthenticated")
    for email in (set_up_email, enrolling_email):
        problem(await portal.post(f"{ADMIN_PORTAL}/sign-in", json={"email": email, "password": PASSWORD}),
                401, "invalid_credentials")
    async with schema(stack, "identity") as conn:
        rows = await conn.fetch("SELECT deleted, password_hash FROM credentials WHERE principal_id = ANY($1::uuid[])",
                                ids)
    assert [(row["deleted"], row["password_hash"]) for row in rows] == [(True, "")] * 2
    # As the deletion reaches them: no key, no requirement, no timer; the read models forget them.
    await eventually(lambda: key_rows(), 20, "the admins' key material is destroyed", done=lambda n: n == 0)
    await eventually(lambda: timers(stack, enrollments), 20, "the timers are cancelled", done=lambda t: not t)
    async with schema(stack, "mfa") as conn:
        removals = await eventually(
            lambda: conn.fetchval("SELECT count(*) FROM events WHERE type = 'MFARequirementRemoved' "
                                  "AND aggregate_id = ANY($1::text[])", enrollments),
            20, "the admin-portal requirements are removed", done=lambda n: n == 2)
    assert removals == 2
    for admin_id, receipt in zip(ids, deleted, strict=True):
        problem(await admin.get(f"/v1/admins/{admin_id}", params={"consistent_with": receipt["consistency_token"]}),
                404, "admin_not_found")
        problem(await admin.delete(f"/v1/admins/{admin_id}"), 404, "admin_not_found")
    listed = ok(await admin.get("/v1/admins", params={"limit": 500, "q": "admin-"}))["items"]
    assert not {a["id"] for a in listed} & set(ids)
    history = [json.loads(line)["envelope"] for line in (await admin.get(
        "/v1/audit/events", params={"principal_id": set_up_id, "type": "AdminDeleted"})).text.splitlines()]
    assert [(e["type"], e["actor"].split(":")[0]) for e in history] == [("AdminDeleted", "api_key")]


async def test_the_last_admin_cannot_be_deleted_even_by_two_deletions_at_once(stack, admin, console, portal,
                                                                              gateway_as, clock) -> None:
    first, first_email, _ = await new_admin(console)
    second, second_email, created = await new_admin(console)
    ok(await admin.get(f"/v1/admins/{second}", params={"consistent_with": created}))
    for other in set(await live_admins(admin)) - {first, second}:
        ok(await admin.delete(f"/v1/admins/{other}"))

    answers = await asyncio.gather(admin.delete(f"/v1/admins/{first}"), admin.delete(f"/v1/admins/{second}"))
    assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
    problem(next(a for a in answers if a.status_code == 409), 409, "last_admin")
    last, last_email = (second, second_email) if answers[0].status_code == 200 else (first, first_email)

    _, session = await console_session(portal, last_email, clock)
    problem(await bearer(gateway_as, session).delete(f"/v1/admins/{last}"), 409, "last_admin")
    problem(await admin.delete(f"/v1/admins/{last}"), 409, "last_admin")
    ok(await bearer(gateway_as, session).get(f"/v1/admins/{last}"))
    async with schema(stack, "identity") as conn:
        assert await conn.fetchval("SELECT count(*) FROM credentials WHERE kind = 'admin' AND NOT deleted") == 1


async def test_the_users_csv_neutralises_formulas_behind_spaces_and_invisible_characters(admin) -> None:
    tag = uuid.uuid4().hex[:10]
    formulas = [f' =HYPERLINK("http://evil.example/{tag}")', f"\u200b@SUM({tag})", f"\u00a0+{tag}", f"\ufeff-{tag}",
                f"={tag}"]
    plain = f"Plain {tag}"
    for name in [*formulas, plain]:
        created = ok(await admin.post("/v1/users", json={"email": f"csv-{uuid.uuid4().hex[:10]}@example.com",
                                                          "name": name, "password": PASSWORD}))
        ok(await admin.get(f"/v1/users/{created['aggregate_id']}",
                           params={"consistent_with": created["consistency_token"]}))
    exported = await admin.get("/v1/users.csv", params={"q": tag})
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(row["name"] for row in rows) == sorted(["'" + name for name in formulas] + [plain])


async def test_answers_with_keys_codes_or_sessions_are_not_stored_and_no_answer_is_sniffed(admin, console, portal,
                                                                                          gateway_as,
                                                                                          clock) -> None:
    seen: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        seen.append(response)

    anonymous = gateway_as(None)
    for client in (admin, portal, anonymous):
        client.event_hooks["response"].append(keep)
    _, email = await new_user(admin, enrollment_days=7)
    _, answer = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    ok(await portal.post("/v1/portal/session", json={"session": answer["session"]}))
    SHOWN_SECRETS.append(ok(await console.post("/v1/api-keys", json={"role": "auditor", "name": "no-store"}))["key"])
    ok(await anonymous.get("/portal/config.json"))
    with_secrets = [r for r in seen if r.request.method == "POST" or r.request.url.path.endswith("config.json")]
    assert len(with_secrets) >= 5  # sign-in, setup material, recovery codes, session info, API key

    static = await anonymous.get("/portal/")
    for request in (anonymous.get("/v1/users"), admin.get("/v1/nowhere"), admin.get("/v1/users.csv"),
                    admin.get("/v1/audit/events", params={"limit": 1}), admin.post("/v1/users", json={}),
                    admin.get("/v1/users", params={"q": "\x00"}), portal.post("/v1/portal/sign-in", json={})):
        await request
    for response in with_secrets:
        assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache"), (
            response.request.url)
    assert static.status_code == 200 and static.headers["cache-control"] == "no-cache"
    assert len(seen) >= len(with_secrets) + 8
    for response in seen:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url


async def test_a_key_no_key_can_be_is_a_401_and_nowhere_in_the_logs(stack, gateway_as) -> None:
    """A bearer token shaped like an API key but longer than any key is unknown, like a wrong key: not a
    crash whose log would hold the token."""
    secret = uuid.uuid4().hex
    anyone = gateway_as(None)
    for path in ("/v1/users", "/v1/audit/compliance"):
        refused = await anyone.get(path, headers={"Authorization": f"Bearer mfp_{secret * 8}"})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated", refused.text
    logs = b"".join(path.read_bytes() for path in stack.supervisor.log_dir.glob("*.log"))
    assert secret.encode() not in logs
