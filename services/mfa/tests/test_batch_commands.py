"""The mfa service's batch route, against the running service: one result per command, a refusal
kept to its own command, and a retried batch applied once."""

from __future__ import annotations

import uuid

from fault_tools import new_users
from mfaplane_contracts.mfa_api import MAX_BATCH
from mfaplane_mfa.commands_api import MAX_BATCH_BYTES
from portal_flows import ok, problem
from trust_tools import SignedAs, direct


def command(action: str, user_id: str, enrollment_days: int | None = 5) -> dict:
    return {"command_id": str(uuid.uuid4()), "action": action, "scope": "user_portal", "principal_id": user_id,
            "enrollment_days": enrollment_days}


async def test_each_command_of_a_batch_stands_on_its_own_and_a_retry_applies_nothing_twice(stack, admin) -> None:
    (a, _), (b, _), (c, _) = await new_users(admin, 3)
    commands = [command("require", a), command("extend", b), command("require", c, enrollment_days=None)]
    async with direct(stack, "mfa", auth=SignedAs(stack, "mfa", actor="admin:batch-test")) as mfa:
        first = ok(await mfa.post("/enrollments/batch", json={"commands": commands}))["results"]
        again = ok(await mfa.post("/enrollments/batch", json={"commands": commands}))["results"]
        statuses = [ok(await mfa.get(f"/enrollments/user_portal/{user}"))["status"] for user in (a, b, c)]

    assert [r["command_id"] for r in first] == [cmd["command_id"] for cmd in commands]
    assert first[1]["receipt"] is None and first[1]["problem"]["code"] == "not_required", "b is not required"
    assert first[1]["problem"]["type"] == "urn:mfaplane:problem:not_required"
    assert [(r["receipt"]["version"], r["receipt"]["duplicate"]) for r in (first[0], first[2])] == [(1, False)] * 2
    assert statuses == ["enrolling", "none", "required_no_period"]

    assert [(r["receipt"]["duplicate"], r["receipt"]["event_ids"]) for r in (again[0], again[2])] == \
        [(True, r["receipt"]["event_ids"]) for r in (first[0], first[2])]
    assert again[1]["problem"]["code"] == "not_required"


async def test_an_invalid_batch_is_refused_whole_and_writes_nothing(stack, admin) -> None:
    (a, _), (b, _) = await new_users(admin, 2)
    # As many commands as a batch may hold (about 170 KB, over the 64 KiB of the other routes), one invalid.
    commands = [command("require", a) for _ in range(MAX_BATCH - 1)] + [command("reset", b, enrollment_days=None)]
    async with direct(stack, "mfa", auth=SignedAs(stack, "mfa", actor="admin:batch-test")) as mfa:
        refused = await mfa.post("/enrollments/batch", json={"commands": commands})
        too_large = await mfa.post("/enrollments/batch", json={"commands": commands, "padding": "x" * MAX_BATCH_BYTES})
        status = ok(await mfa.get(f"/enrollments/user_portal/{a}"))["status"]
    problem(refused, 422, "validation_error")
    problem(too_large, 413, "request_too_large")
    assert status == "none"
