"""What a client reads is predictable: every list pages the same way, a receipt names the id the
client sent, and a shape that changed is still served, marked deprecated, to clients that did not
ask for the new one (README, "Versions and deprecations")."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from email.utils import parsedate_to_datetime

import httpx

from fault_tools import eventually
from mfaplane_gateway.api import api_versions
from portal_flows import PASSWORD, new_admin, ok, problem, set_up, sign_in


def ids(items: list[dict]) -> list[str]:
    return [item.get("id") or item["key_id"] for item in items]


async def walk(client: httpx.AsyncClient, path: str, **params) -> list[str]:
    """Every item of a list, page by page."""
    found, cursor = [], None
    while True:
        page = ok(await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}))
        assert set(page) == {"items", "next_cursor"}, page
        found += ids(page["items"])
        if not (cursor := page["next_cursor"]):
            return found


async def test_every_list_pages_the_same_way(admin, console) -> None:
    tag = uuid.uuid4().hex[:8]
    made = []
    for n in range(3):
        made.append(ok(await admin.post("/v1/users", json={"email": f"{tag}-{n}@example.com", "name": f"Shape {n}",
                                                           "password": PASSWORD}))["consistency_token"])
        made.append(ok(await admin.post("/v1/systems", json={"name": f"shape-{tag}-{n}",
                                                             "kind": "macos"}))["consistency_token"])
    made.append((await new_admin(console))[2])
    ok(await console.post("/v1/api-keys", json={"role": "auditor", "name": f"shape {tag}"}))
    lists = {"/v1/users": {"q": tag}, "/v1/admins": {}, "/v1/systems": {"kind": "macos"}, "/v1/api-keys": {}}
    for path, selection in lists.items():
        read_back = {"consistent_with": made} if path != "/v1/api-keys" else {}  # API keys are read from identity
        whole = ids(ok(await admin.get(path, params={**selection, **read_back, "limit": 500}))["items"])
        assert len(whole) >= 2 and await walk(admin, path, **selection, limit=1) == whole, path


async def test_receipts_name_the_user_admin_or_system_the_client_sent(admin, console, gateway_as) -> None:
    user_id = ok(await admin.post("/v1/users", json={"email": f"r-{uuid.uuid4().hex[:8]}@example.com",
                                                     "name": "Receipt", "password": PASSWORD}))["id"]
    required = ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 7}))
    assert required["id"] == user_id and required["aggregate_id"] != user_id  # the enrollment's own record
    admin_id, _, _ = await new_admin(console)
    assert ok(await admin.post(f"/v1/admins/{admin_id}/mfa/require", json={"enrollment_days": 7}))["id"] == admin_id
    system = ok(await admin.post("/v1/systems", json={"name": "receipt", "kind": "linux"}))["id"]
    assert ok(await admin.put(f"/v1/systems/{system}/mfa", json={"enabled": True}))["id"] == system
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": required["consistency_token"]}))

    receipt = ok(await gateway_as("admin").get("/openapi.json"))["components"]["schemas"]["Receipt"]["properties"]
    assert receipt["aggregate_id"]["deprecated"] is True and "deprecated" not in receipt["id"]


async def test_a_client_without_an_api_version_gets_the_first_shapes_marked_deprecated(admin, gateway_as) -> None:
    first = gateway_as("admin")
    del first.headers["API-Version"]
    for path in ("/v1/systems", "/v1/api-keys"):
        answer = await first.get(path, params={"limit": 1})
        assert ids(ok(answer)) == await walk(admin, path, limit=5), "every item, as a bare array"
        assert answer.headers["Deprecation"] == f"@{int(api_versions.DEPRECATED_SINCE.timestamp())}"
        assert parsedate_to_datetime(answer.headers["Sunset"]) == api_versions.SUNSET
    users = await first.get("/v1/users", params={"limit": 1})
    assert set(ok(users)) == {"items", "next_cursor"} and "Deprecation" not in users.headers

    problem(await admin.get("/v1/systems", headers={"API-Version": "2020-01-01"}), 422, "validation_error")
    users_cursor = ok(await admin.get("/v1/users", params={"limit": 1}))["next_cursor"]
    problem(await admin.get("/v1/systems", params={"cursor": users_cursor}), 400, "invalid_cursor")


def forged_cursor(listing: str, sort_value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps([listing, sort_value, str(uuid.uuid4())]).encode()).decode()


async def test_a_made_up_cursor_is_refused_as_a_cursor_this_list_did_not_return(admin) -> None:
    for made_up in ("yesterday", "2026-12-02", "2026-12-02T10:00:00", "0001-01-01T00:00:00+05:00", None, 7):
        problem(await admin.get("/v1/api-keys", params={"cursor": forged_cursor("api-keys", made_up)}), 400,
                "invalid_cursor")
    problem(await admin.get("/v1/systems", params={"cursor": forged_cursor("systems", "a\x00")}), 400,
            "invalid_cursor")
    after_a_moment = forged_cursor("api-keys", "2026-12-02T10:00:00+01:00")  # what a real one holds
    assert set(ok(await admin.get("/v1/api-keys", params={"cursor": after_a_moment}))) == {"items", "next_cursor"}


async def test_set_up_is_served_and_filters_beside_its_deprecated_names_until_the_sunset(admin, portal, clock,
                                                                                           gateway_as) -> None:
    """`set_up` was `mfa_active` in the user and admin lists, their CSV and a bulk selection, and `configured` in
    the audit state (docs/glossary.md): the old names are served beside it and marked deprecated, and the old
    filter still selects, answered with Deprecation and Sunset headers; both filters at once must agree."""
    tag = uuid.uuid4().hex[:8]
    emails = [f"setup-{tag}-{n}@example.com" for n in range(2)]
    users = [ok(await admin.post("/v1/users", json={"email": email, "name": "Setup", "password": PASSWORD}))["id"]
             for email in emails]
    ok(await admin.post(f"/v1/users/{users[0]}/mfa/require", json={"enrollment_days": 7}))
    await set_up(portal, (await sign_in(portal, emails[0]))["challenge"], clock)
    listed = await eventually(lambda: admin.get("/v1/users", params={"q": tag, "set_up": "true"}), 20,
                              "the setup reaches the list", done=lambda answer: len(ok(answer)["items"]) == 1)
    [done] = listed.json()["items"]
    assert (done["id"], done["set_up"], done["mfa_active"]) == (users[0], True, True)

    for path in ("/v1/users", "/v1/users.csv", "/v1/users/status-counts"):
        by_name = await admin.get(path, params={"q": tag, "set_up": "false"})
        by_old_name = await admin.get(path, params={"q": tag, "mfa_active": "false"})
        assert by_name.status_code == by_old_name.status_code == 200 and by_name.text == by_old_name.text, path
        assert "Deprecation" not in by_name.headers and "Sunset" not in by_name.headers, path
        assert by_old_name.headers["Deprecation"] == f"@{int(api_versions.DEPRECATED_SINCE.timestamp())}", path
        assert parsedate_to_datetime(by_old_name.headers["Sunset"]) == api_versions.SUNSET, path
        problem(await admin.get(path, params={"set_up": "true", "mfa_active": "false"}), 422, "conflicting_filters")
    assert ids(ok(await admin.get("/v1/users", params={"q": tag, "set_up": "false"}))["items"]) == [users[1]]
    agreeing = ok(await admin.get("/v1/users", params={"q": tag, "set_up": "true", "mfa_active": "true"}))
    assert ids(agreeing["items"]) == [users[0]]
    exported = list(csv.DictReader(io.StringIO((await admin.get("/v1/users.csv", params={"q": tag})).text)))
    assert {(r["id"], r["set_up"], r["mfa_active"]) for r in exported} == {(users[0], "True", "True"),
                                                                          (users[1], "False", "False")}
    admins = await admin.get("/v1/admins", params={"mfa_active": "true"})
    assert all(a["set_up"] and a["mfa_active"] for a in ok(admins)["items"]) and "Deprecation" in admins.headers

    # A bulk action's selection: the one not set up would be required, the one set up is not selected.
    async def dry_run(selection: dict) -> httpx.Response:
        return await admin.post("/v1/users/mfa/bulk", json={"action": "require", "filter": {"q": tag, **selection},
                                                            "dry_run": True})

    by_name, by_old_name = await dry_run({"set_up": False}), await dry_run({"mfa_active": False})
    assert ok(by_name) == ok(by_old_name) == {"would_change": [users[1]], "unchanged": [], "refused": [],
                                              "not_found": []}
    assert "Deprecation" not in by_name.headers and "Deprecation" in by_old_name.headers
    problem(await dry_run({"set_up": False, "mfa_active": True}), 422, "conflicting_filters")

    document = ok(await gateway_as("admin").get("/openapi.json"))
    for schema, old in (("User", "mfa_active"), ("AdminAccount", "mfa_active"), ("Selection", "mfa_active"),
                        ("PrincipalStateAt", "configured")):
        fields = document["components"]["schemas"][schema]["properties"]
        assert fields[old]["deprecated"] is True and "deprecated" not in fields["set_up"], schema
    for path in ("/v1/users", "/v1/users.csv", "/v1/users/status-counts", "/v1/admins"):
        parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert parameters["mfa_active"]["deprecated"] is True and "deprecated" not in parameters["set_up"], path


async def test_an_enrollment_command_without_a_body_takes_the_documented_seven_days(admin) -> None:
    """An admin command's body may leave `enrollment_days` out: the default the API documents applies,
    whichever service the gateway passes the command to."""
    user = ok(await admin.post("/v1/users", json={"email": f"d-{uuid.uuid4().hex[:8]}@example.com",
                                                  "name": "Dee Fault", "password": PASSWORD}))["id"]
    for action in ("require", "extend", "reset"):
        done = ok(await admin.post(f"/v1/users/{user}/mfa/{action}", json={}))
        shown = ok(await admin.get(f"/v1/users/{user}", params={"consistent_with": done["consistency_token"]}))
        assert shown["enrollment_days"] == 7, (action, shown)
