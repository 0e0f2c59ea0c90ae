"""Bulk actions over many users, a dry run, a gateway restart mid-way, the route's size limit, the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid

from mfaplane_gateway.bulk import MAX_REQUEST_BYTES
from portal_flows import PASSWORD, ok, problem

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
