"""The gateway's audit log, appended in a consumer group of its own (mfaplane-gateway-audit), seen from
outside: the lists follow writes while the audit chain's lock is held, a consistency token waits for the
audit log as well, and across a crash of the gateway the chain keeps every event once and verifies."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx

from fault_tools import eventually, schema
from portal_flows import PASSWORD, new_user, ok, problem

AUDIT_CHAIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mfaplane-audit-log'))"  # audit_log.append's


async def audited_types(auditor: httpx.AsyncClient, user_id: str) -> list[str]:
    response = await auditor.get("/v1/audit/events", params={"principal_id": user_id})
    assert response.status_code == 200, response.text
    return [json.loads(line)["envelope"]["type"] for line in response.text.splitlines()]


async def test_the_lists_follow_writes_while_the_audit_chain_is_held_and_a_token_waits_for_the_log(
        stack, admin, auditor) -> None:
    email = f"held-chain-{uuid.uuid4().hex[:8]}@example.com"
    async with schema(stack, "gateway") as appender:
        async with appender.transaction():  # as a transaction appending to the chain holds it, until it ends
            await appender.execute(AUDIT_CHAIN_LOCK)
            created = ok(await admin.post("/v1/users", json={"email": email, "name": "Held Chain",
                                                             "password": PASSWORD}))
            listed = await eventually(lambda: admin.get(f"/v1/users/{created['id']}"), 30, "the new user listed",
                                      done=lambda answer: answer.status_code == 200)
            assert ok(listed)["email"] == email
            problem(await admin.get(f"/v1/users/{created['id']}",
                                    params={"consistent_with": created["consistency_token"]}), 503,
                    "projection_behind")
            assert await audited_types(auditor, created["id"]) == []

    ok(await admin.get(f"/v1/users/{created['id']}", params={"consistent_with": created["consistency_token"]}))
    assert await audited_types(auditor, created["id"]) == ["UserCreated"]


async def test_across_a_crash_of_the_gateway_the_audit_chain_holds_every_event_once(stack, admin, auditor) -> None:
    user_id, _ = await new_user(admin)
    receipts = [ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 7}))]
    stack.kill("gateway")  # what either group handled and had not committed yet is delivered again
    await asyncio.to_thread(stack.restart, "gateway")
    await asyncio.to_thread(stack.wait_for_group, "gateway", 1)  # a killed member stays until its session ends
    receipts.append(ok(await admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 3})))
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": [r["consistency_token"] for r in receipts]}))

    assert await audited_types(auditor, user_id) == ["UserCreated", "MFARequired", "EnrollmentExtended"]
    verified = subprocess.run([sys.executable, "-m", "mfaplane_gateway", "verify-audit"], capture_output=True,
                              text=True, timeout=120, env=stack.service_env("gateway"))
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr
