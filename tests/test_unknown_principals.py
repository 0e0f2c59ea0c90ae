"""Enrollment commands for a principal that does not exist, or no longer does."""

from __future__ import annotations

import uuid

import pytest

from fault_tools import schema

ACTIONS = [("require", {"enrollment_days": 7}), ("extend", {"enrollment_days": 7}),
           ("reset", {"enrollment_days": 7}), ("remove-requirement", None)]


@pytest.mark.parametrize(("collection", "kind", "scope"), [("users", "user", "user_portal"),
                                                           ("admins", "admin", "admin_portal")])
async def test_an_unknown_principal_is_refused_and_nothing_is_written(stack, admin, console, collection, kind,
                                                                     scope) -> None:
    unknown = uuid.uuid4()
    caller = console if collection == "admins" else admin  # resetting an admin's MFA needs a step-up
    for action, body in ACTIONS:
        answer = await caller.post(f"/v1/{collection}/{unknown}/mfa/{action}", json=body)
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"]== f"urn:mfaplane:problem:{kind}_not_found"
    async with schema(stack, "mfa") as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1", f"{scope}:{unknown}") == 0


async def test_a_deleted_user_is_refused(stack, admin) -> None:
    created = await admin.post("/v1/users", json={"email": f"gone-{uuid.uuid4().hex[:8]}@example.com", "name": "Gone",
                                                   "password": "correct horse battery"})
    user_id = created.json()["aggregate_id"]
    assert (await admin.delete(f"/v1/users/{user_id}")).status_code == 200
    answer = await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 7})
    assert answer.status_code == 404 and answer.json()["type"] == "urn:mfaplane:problem:user_not_found", answer.text
