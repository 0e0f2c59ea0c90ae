"""Bulk actions over many users and systems: a dry run, a gateway restart mid-way, the route's size limit,
the CSV export, no-ops counted apart, and the consistency token of a bulk result."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid

from fault_tools import schema
from mfaplane_gateway.bulk.bulk import MAX_REQUEST_BYTES
from portal_flows import PASSWORD, new_user, ok, problem, set_up, sign_in

USERS = 1000


async def _create_users(admin, tag: str, count: int) -> list[str]:
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with semaphore:
            body = {"email": f"{tag}-{i:04d}@example.com", "name": f"Bulk {tag} {i}", "password": PASSWORD}
            return ok(await admin.post("/v1/users", json=body))

    receipts = await asyncio.gather(*(one(i) for i in range(count)))
    # Read the last ones back so the read model has them all before a bulk action targets them.
    ok(await admin.get(f"/v1/users/{receipts[-1]['aggregate_id']}",
                       params={"consistent_with": [r["consistency_token"] for r in receipts[-20:]]}))
    await _until(admin, tag, lambda page: len(page) == count, "users", {})
    return [r["aggregate_id"] for r in receipts]


async def _until(admin, tag: str, done, what: str, params: dict, limit: int = 500) -> list[dict]:
    for _ in range(300):
        found, cursor = [], None
        while True:
            page = ok(await admin.get("/v1/users", params={"q": tag, "limit": limit, **params,
                                                            **({"cursor": cursor} if cursor else {})}))
            found += page["items"]
            if not (cursor := page["next_cursor"]):
                break
        if done(found):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} never reached the expected state")


async def _completed(admin, operation_id: str) -> dict:
    for _ in range(600):
        progress = ok(await admin.get(f"/v1/bulk-operations/{operation_id}"))
        if progress["state"] == "completed":
            return progress
        await asyncio.sleep(0.2)
    raise AssertionError(f"bulk operation {operation_id} never completed")


async def test_bulk_require_over_1000_users_with_invalid_ids_and_a_restart(stack, admin) -> None:
    tag = f"bulk{uuid.uuid4().hex[:6]}"
    ids = await _create_users(admin, tag, USERS)
    invalid = [str(uuid.uuid4()) for _ in range(5)]

    dry = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "enrollment_days": 10,
                                                           "user_ids": ids + invalid, "dry_run": True}))
    assert len(dry["would_change"]) == USERS and sorted(dry["not_found"]) == sorted(invalid)
    assert (await admin.get("/v1/users/status-counts", params={"q": tag})).json()["none"] == USERS

    operation = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "enrollment_days": 10,
                                                                 "user_ids": ids + invalid}))
    assert operation["total"] == USERS + len(invalid)
    await asyncio.sleep(0.5)
    stack.restart("gateway")  # mid-way: the operation survives and is finished

    progress = await _completed(admin, operation["id"])
    assert progress["done"] == USERS
    assert sorted(f["user_id"] for f in progress["failed"]) == sorted(invalid)
    assert {f["reason"] for f in progress["failed"]} == {"user_not_found"}
    enrolling = await _until(admin, tag, lambda page: len(page) == USERS, "enrolling", {"status": "enrolling"})
    assert {u["enrollment_days"] for u in enrolling} == {10}


async def test_bulk_by_filter_and_the_dry_run_changes_nothing(admin) -> None:
    tag = f"filt{uuid.uuid4().hex[:6]}"
    ids = await _create_users(admin, tag, 6)
    ok(await admin.post(f"/v1/users/{ids[0]}/mfa/require", json={"enrollment_days": 3}))
    await _until(admin, tag, lambda page: len(page) == 1, "required", {"required": "true"})

    selection = {"q": tag, "status": ["none"]}
    dry = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "filter": selection, "dry_run": True}))
    assert sorted(dry["would_change"]) == sorted(ids[1:])
    assert (await admin.get("/v1/users/status-counts", params={"q": tag})).json()["enrolling"] == 1

    extend_dry = ok(await admin.post("/v1/users/mfa/bulk", json={
        "action": "extend", "enrollment_days": 5, "filter": {"q": tag}, "dry_run": True}))
    assert extend_dry["would_change"] == [ids[0]], "only required users who have not set up can be extended"
    assert (extend_dry["unchanged"], sorted(f["user_id"] for f in extend_dry["refused"])) == ([], sorted(ids[1:]))
    assert {f["reason"] for f in extend_dry["refused"]} == {"not_required"}
    require_dry = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "filter": {"q": tag},
                                                                  "dry_run": True}))
    assert (require_dry["unchanged"], require_dry["refused"]) == ([ids[0]], []), "already required: unchanged"

    problem(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "dry_run": True}),
            422, "validation_error")
    problem(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "enrollment_days": 366,
                                                          "user_ids": ids}), 422, "validation_error")


async def test_a_bulk_extend_refused_for_some_users_fails_only_those(admin) -> None:
    tag = f"ext{uuid.uuid4().hex[:6]}"
    ids = await _create_users(admin, tag, 4)
    for user_id in ids[:2]:
        ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 3}))
    await _until(admin, tag, lambda page: len(page) == 2, "required", {"required": "true"})

    operation = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "extend", "enrollment_days": 20,
                                                                 "user_ids": ids}))
    progress = await _completed(admin, operation["id"])
    assert progress["done"] == 2
    assert sorted((f["user_id"], f["reason"]) for f in progress["failed"]) == \
        sorted((user_id, "not_required") for user_id in ids[2:])
    await _until(admin, tag, lambda page: sorted(u["enrollment_days"] for u in page) == [20, 20], "extended",
                 {"status": "enrolling"})


async def test_csv_export_has_every_filtered_user(admin) -> None:
    tag = f"csv{uuid.uuid4().hex[:6]}"
    ids = await _create_users(admin, tag, 12)
    response = await admin.get("/v1/users.csv", params={"q": tag})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"none"}


async def test_the_bulk_route_takes_10000_ids_and_refuses_more_than_its_own_limit(admin) -> None:
    ids = [str(uuid.uuid4()) for _ in range(10_000)]  # about 390 KB of JSON, over the 64 KiB of other routes
    dry = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "user_ids": ids, "dry_run": True}))
    assert len(dry["not_found"]) == 10_000

    padding = "x" * (MAX_REQUEST_BYTES + 1)
    refused = problem(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "user_ids": ids,
                                                                     "dry_run": True, "padding": padding}),
                      413, "request_too_large")
    assert str(MAX_REQUEST_BYTES) in refused["detail"]
    problem(await admin.post("/v1/users", json={"email": "big@example.com", "name": "x" * 70_000,
                                                "password": PASSWORD}), 413, "request_too_large")


async def test_a_bulk_counts_users_it_changed_apart_from_those_already_as_asked(admin) -> None:
    tag = f"noop{uuid.uuid4().hex[:6]}"
    ids = await _create_users(admin, tag, 3)
    required = ok(await admin.post(f"/v1/users/{ids[0]}/mfa/require", json={"enrollment_days": 3}))

    operation = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "enrollment_days": 3,
                                                                 "user_ids": ids}))
    # Read at once with the operation's token: it waits for the operation and for each change it made.
    listed = ok(await admin.get("/v1/users", params={"q": tag, "consistent_with": operation["consistency_token"]}))
    assert {user["id"]: user["status"] for user in listed["items"]} == dict.fromkeys(ids, "enrolling")
    progress = await _completed(admin, operation["id"])
    assert (progress["changed"], progress["unchanged"], progress["done"], progress["failed"]) == (2, 1, 3, [])
    assert ok(await admin.get(f"/v1/users/{ids[0]}"))["deadline"] == \
        ok(await admin.get(f"/v1/users/{ids[0]}", params={"consistent_with": required["consistency_token"]}))[
            "deadline"], "the user already required kept its period"


async def systems_listed(admin, **params) -> dict[str, bool]:
    """Every system's MFA switch, by id, as /v1/systems lists it."""
    page = ok(await admin.get("/v1/systems", params={"limit": 500, **params}))
    return {system["id"]: system["mfa_enabled"] for system in page["items"]}


async def test_a_system_bulk_tells_no_ops_apart_and_decisions_never_lag_behind_it(stack, admin, portal, agent_of,
                                                                                   clock) -> None:
    tag = uuid.uuid4().hex[:6]
    on, off = [ok(await admin.post("/v1/systems", json={"name": f"bulk-{tag}-{n}", "kind": "linux"}))["id"]
               for n in ("on", "off")]
    switched = ok(await admin.put(f"/v1/systems/{on}/mfa", json={"enabled": True}))
    await systems_listed(admin, consistent_with=switched["consistency_token"])
    _, email = await new_user(admin, enrollment_days=7)
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    agent = agent_of(on)

    async def decision() -> dict:
        return ok(await agent.post(f"/v1/systems/{on}/authorize", json={"email": email, "password": PASSWORD}))

    assert (await decision())["decision"] == "code_required"
    missing = str(uuid.uuid4())
    async with schema(stack, "gateway") as held:
        # The gateway's projection is held back: nothing it consumes now is committed until the rollback.
        hold = held.transaction()
        await hold.start()
        try:
            await held.execute("LOCK TABLE projected_versions IN SHARE MODE")
            result = ok(await admin.post("/v1/systems/mfa/bulk", json={"enabled": False,
                                                                      "system_ids": [on, off, missing]}))
            assert (result["changed"], result["unchanged"], result["failed"]) == \
                ([on], [off], {missing: "system_not_found"})
            assert await decision() == {"decision": "allow", "reason": "mfa_not_enabled_on_system"}
            assert (await systems_listed(admin))[on], "the list, read without the token, is still behind"
        finally:
            await hold.rollback()
    listed = await systems_listed(admin, consistent_with=result["consistency_token"])
    assert (listed[on], listed[off]) == (False, False)
    problem(await admin.get("/v1/systems", params={"consistent_with": "bulk:not-an-id"}), 400,
            "invalid_consistency_token")


async def test_a_token_this_api_did_not_return_is_refused_and_an_unknown_bulk_waits_for_nothing(admin) -> None:
    for made_up in ("abc@99999999999", "abc@2147483648", "abc@\u00b2", "abc@" + "9" * 5000):
        problem(await admin.get("/v1/users", params={"consistent_with": made_up}), 400, "invalid_consistency_token")
    # The gateway records a bulk before answering it: an id it does not know was never issued, or is a
    # systems bulk's from more than a day ago. Its token has nothing to wait for.
    ok(await admin.get("/v1/systems", params={"consistent_with": f"bulk:{uuid.uuid4()}"}))


async def test_an_import_dry_run_writes_nothing_and_reports_each_rows_problem(admin) -> None:
    tag = f"imp{uuid.uuid4().hex[:6]}"
    (taken,) = await _create_users(admin, tag, 1)
    taken_email = ok(await admin.get(f"/v1/users/{taken}"))["email"]
    rows = [{"email": f"{tag}-a@example.com", "name": "Ana", "password": PASSWORD},
            {"email": f"{tag}-b@example.com", "name": "Ben", "password": ""},
            {"email": "not-an-email", "name": "Cy", "password": PASSWORD},
            {"email": taken_email.upper(), "name": "Di", "password": PASSWORD},
            {"email": f"{tag}-A@example.com", "name": "Ana again", "password": PASSWORD},
            {"email": f"{tag}-e@example.com", "name": "Ed", "password": "short"}]
    dry = ok(await admin.post("/v1/users/import", json={"rows": rows, "dry_run": True}))
    assert [(r["outcome"], r["code"]) for r in dry["rows"]] == [
        ("create", None), ("create", None), ("invalid", "invalid_row"), ("invalid", "email_taken"),
        ("invalid", "email_repeated"), ("invalid", "invalid_row")]
    assert dry["rows"][1]["reset_link_mailed"] and dry["consistency_token"] is None

    # identity refuses an email already in use: had the dry run created Ana or Ben, this would refuse them.
    done = ok(await admin.post("/v1/users/import", json={"rows": rows}))
    assert [r["outcome"] for r in done["rows"]] == ["created", "created", "invalid", "invalid", "invalid", "invalid"]
    listed = ok(await admin.get("/v1/users", params={"q": tag, "consistent_with": done["consistency_token"]}))
    assert sorted(u["name"] for u in listed["items"]) == sorted(["Ana", "Ben", f"Bulk {tag} 0"])
    assert done["rows"][1]["reset_link_mailed"], "the user without a password is mailed a link to set one"
