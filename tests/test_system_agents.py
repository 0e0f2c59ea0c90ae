"""What a system agent (the SSH PAM module, agents/pam) needs of the gateway, end to end through the real
services: keys bound to one system, users' login names (one at a time, in bulk and by CSV), a decision by
login name whose code is checked in the same call, and every decision on the user's history.
The agent itself against a real sshd: tests/test_ssh_login.py."""

from __future__ import annotations

import csv
import io
import json
import uuid

from fault_tools import schema
from portal_flows import PASSWORD, STEP, code_now, new_system, new_user, ok, problem, set_up, sign_in, user_named


def login_name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


async def named_user(admin, **require) -> tuple[str, str, str]:
    """A user with a login name of their own; (id, email, login name)."""
    name = login_name()
    return *await user_named(admin, name, **require), name


async def history_of(stack, user_id: str) -> list[dict]:
    """The user's enrollment events as mfa stored them: (type, payload), in order."""
    async with schema(stack, "mfa") as mfa:
        rows = await mfa.fetch("SELECT type, payload FROM events WHERE aggregate_id = $1 ORDER BY aggregate_version",
                               f"user_portal:{user_id}")
    return [{"type": row["type"], **json.loads(row["payload"])} for row in rows]


async def test_a_login_by_name_is_asked_for_a_code_once_and_every_decision_is_on_the_users_history(
        stack, admin, portal, agent_of, clock) -> None:
    host = await new_system(admin)
    agent = agent_of(host)
    user_id, email, name = await named_user(admin, enrollment_days=7)

    async def decide(**fields) -> dict:
        return ok(await agent.post(f"/v1/systems/{host}/authorize",
                                   json={"login_name": name, "source": "192.0.2.7", **fields}))

    assert await decide() == {"decision": "allow", "reason": "mfa_not_set_up"}
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)
    assert await decide() == {"decision": "code_required", "reason": "mfa_set_up"}
    code = code_now(key, clock)
    assert await decide(code=code) == {"decision": "allow", "reason": "code_verified"}
    assert await decide(code=code) == {"decision": "deny", "reason": "code_already_used"}
    decided = [(e["outcome"], e["reason"], e["system_id"], e["login_name"], e["source"])
               for e in await history_of(stack, user_id) if e["type"] == "SystemAccessDecided"]
    assert decided == [(outcome, reason, host, name, "192.0.2.7") for outcome, reason in [
        ("allow", "mfa_not_set_up"), ("code_required", "mfa_set_up"), ("allow", "code_verified"),
        ("deny", "code_already_used")]]


async def test_an_unknown_login_name_is_denied_and_the_email_form_still_works(admin, portal, agent_of, clock) -> None:
    host = await new_system(admin)
    agent = agent_of(host)
    refused = ok(await agent.post(f"/v1/systems/{host}/authorize", json={"login_name": login_name()}))
    assert refused == {"decision": "deny", "reason": "unknown_login_name"}
    _, email = await new_user(admin, enrollment_days=7)
    wrong = ok(await agent.post(f"/v1/systems/{host}/authorize", json={"email": email, "password": "not it at all"}))
    assert wrong == {"decision": "deny", "reason": "invalid_credentials"}
    right = ok(await agent.post(f"/v1/systems/{host}/authorize", json={"email": email, "password": PASSWORD}))
    assert right == {"decision": "allow", "reason": "mfa_not_set_up"}
    for mixed in ({"login_name": "ada", "email": email, "password": PASSWORD}, {"email": email}, {}):
        problem(await agent.post(f"/v1/systems/{host}/authorize", json=mixed), 422, "validation_error")


async def test_an_agent_key_decides_for_its_own_system_only(stack, admin, portal, agent_of, clock) -> None:
    """The attack: a key taken from one host (or one made before keys were bound) asks about, and tries
    codes for, a user on another host. Refused before anything is read or written."""
    mine, theirs = await new_system(admin), await new_system(admin)
    user_id, email, name = await named_user(admin, enrollment_days=7)
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    before = await history_of(stack, user_id)
    stolen = agent_of(mine)
    for body in ({"login_name": name}, {"login_name": name, "code": "123456"}):
        problem(await stolen.post(f"/v1/systems/{theirs}/authorize", json=body), 403, "agent_key_of_another_system")
    unbound = agent_of(theirs)  # not used yet: the gateway has nothing cached for it
    async with schema(stack, "identity") as identity:  # as a key made before keys were bound is stored
        await identity.execute("UPDATE api_keys SET system_id = NULL WHERE name = $1", f"agent of {theirs}")
    problem(await unbound.post(f"/v1/systems/{theirs}/authorize", json={"login_name": name}), 403,
            "agent_key_of_another_system")
    application, host = await new_system(admin, kind="sso_application"), await new_system(admin)
    misbound = agent_of(host)
    async with schema(stack, "identity") as identity:  # as a key bound to an application before kinds were checked
        await identity.execute("UPDATE api_keys SET system_id = $1 WHERE name = $2", uuid.UUID(application),
                               f"agent of {host}")
    for body in ({"login_name": name, "code": "123456"}, {"email": email, "password": PASSWORD}):
        problem(await misbound.post(f"/v1/systems/{application}/authorize", json=body), 409, "wrong_system_kind")
    assert await history_of(stack, user_id) == before


async def test_an_agent_key_must_name_an_existing_system_of_its_kind(console, admin) -> None:
    host = await new_system(admin, mfa=False)
    problem(await console.post("/v1/api-keys", json={"role": "system_agent", "name": "no host"}), 422,
            "validation_error")
    problem(await console.post("/v1/api-keys", json={"role": "portal", "name": "x", "system_id": host}), 422,
            "validation_error")
    problem(await console.post("/v1/api-keys", json={"role": "system_agent", "name": "gone",
                                                      "system_id": str(uuid.uuid4())}), 404, "system_not_found")
    application = await new_system(admin, mfa=False, kind="sso_application")
    for role, system in (("system_agent", application), ("sso_client", host)):
        problem(await console.post("/v1/api-keys", json={"role": role, "name": "misbound", "system_id": system}),
                409, "wrong_system_kind")
    issued = ok(await console.post("/v1/api-keys", json={"role": "system_agent", "name": "host", "system_id": host}))
    assert issued["system_id"] == host
    listed = ok(await console.get("/v1/api-keys", params={"limit": 500}))["items"]
    assert next(key for key in listed if key["key_id"] == issued["key_id"])["system_id"] == host


async def test_login_names_are_unique_shown_and_cleared(admin) -> None:
    user_id, _, name = await named_user(admin)
    other, _ = await new_user(admin)
    problem(await admin.patch(f"/v1/users/{other}", json={"login_name": name}), 409, "login_name_taken")
    problem(await admin.patch(f"/v1/users/{other}", json={"login_name": "Root Admin"}), 422, "validation_error")
    renamed = ok(await admin.patch(f"/v1/users/{user_id}", json={"name": "Renamed"}))  # absent: kept
    shown = ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": renamed["consistency_token"]}))
    assert (shown["name"], shown["login_name"]) == ("Renamed", name)
    cleared = ok(await admin.patch(f"/v1/users/{user_id}", json={"login_name": None}))
    assert ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": cleared["consistency_token"]}))[
        "login_name"] is None
    ok(await admin.patch(f"/v1/users/{other}", json={"login_name": name}))  # free again
    created = ok(await admin.post("/v1/users", json={"email": f"{login_name()}@example.com", "name": "New",
                                                     "password": PASSWORD, "login_name": login_name()}))
    problem(await admin.post("/v1/users", json={"email": f"{login_name()}@example.com", "name": "Dup",
                                                "password": PASSWORD, "login_name": name}), 409, "login_name_taken")
    assert ok(await admin.get(f"/v1/users/{created['id']}",
                              params={"consistent_with": created["consistency_token"]}))["login_name"]


async def test_login_names_in_bulk_and_from_the_exported_csv(admin) -> None:
    (a, _), (b, _), (c, _) = [await new_user(admin) for _ in range(3)]
    taken = (await named_user(admin))[2]
    names = {a: login_name(), b: login_name()}
    result = ok(await admin.post("/v1/users/login-names", json={"items": [
        {"user_id": a, "login_name": names[a]}, {"user_id": b, "login_name": names[b]},
        {"user_id": c, "login_name": taken}, {"user_id": str(uuid.uuid4()), "login_name": login_name()}]}))
    assert (result["changed"], result["unchanged"]) == ([a, b], [])
    assert sorted(result["failed"].values()) == ["login_name_taken", "user_not_found"]
    export = (await admin.get("/v1/users.csv", params={"consistent_with": result["consistency_token"]})).text
    rows = [row for row in csv.DictReader(io.StringIO(export)) if row["id"] in (a, b, c)]
    assert {row["id"]: row["login_name"] for row in rows} == {a: names[a], b: names[b], c: ""}
    names[c] = login_name()
    for row in rows:  # filled in and sent back: c gets a name, a loses hers, b is as he was
        row["login_name"] = {a: "", b: names[b], c: names[c]}[row["id"]]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    upload = ok(await admin.post("/v1/users/login-names.csv", content=out.getvalue(),
                                 headers={"content-type": "text/csv"}))
    assert (sorted(upload["changed"]), upload["unchanged"], upload["failed"]) == (sorted([a, c]), [b], {})
    bad = "id,login_name\n" + f"{a},ok_name\n" + f"{b},Not Valid\n"
    problem(await admin.post("/v1/users/login-names.csv", content=bad, headers={"content-type": "text/csv"}), 422,
            "invalid_login_names")
    assert ok(await admin.get(f"/v1/users/{a}", params={"consistent_with": upload["consistency_token"]}))[
        "login_name"] is None, "nothing of a refused file was written"


async def test_a_system_is_renamed_searched_and_deleted_and_its_agents_then_decide_nothing(admin, agent_of) -> None:
    tag = uuid.uuid4().hex[:8]
    host = await new_system(admin)
    agent = agent_of(host)
    renamed = ok(await admin.patch(f"/v1/systems/{host}", json={"name": f"web-{tag}_01"}))
    found = ok(await admin.get("/v1/systems", params={"q": f"WEB-{tag}_", "consistent_with": renamed[
        "consistency_token"]}))["items"]
    assert [(system["id"], system["name"]) for system in found] == [(host, f"web-{tag}_01")]
    assert ok(await admin.get("/v1/systems", params={"q": f"web-{tag}%"}))["items"] == [], "% is no wildcard"
    deleted = ok(await admin.delete(f"/v1/systems/{host}"))
    listed = ok(await admin.get("/v1/systems", params={"q": tag, "consistent_with": deleted["consistency_token"]}))
    assert listed["items"] == []
    problem(await agent.post(f"/v1/systems/{host}/authorize", json={"login_name": login_name()}), 404,
            "system_not_found")
    for refused in (admin.delete(f"/v1/systems/{host}"), admin.patch(f"/v1/systems/{host}", json={"name": "back"}),
                    admin.put(f"/v1/systems/{host}/mfa", json={"enabled": False})):
        problem(await refused, 404, "system_not_found")
