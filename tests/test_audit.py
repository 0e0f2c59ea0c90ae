"""Auditors: the event history as NDJSON, a user's MFA state at past moments, compliance then, and
the tamper-evident hash chain (in the database and in an export)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from mfaplane_eventing import db
from mfaplane_gateway.audit import audit_log, audit_verify
from portal_flows import new_user, ok, problem, set_up, sign_in
from trust_tools import public_keys, service_key

DAY = timedelta(days=1)


async def projected(admin: httpx.AsyncClient, user_id: str, *receipts: dict) -> None:
    """Returns once the gateway has recorded the receipts' events (read-your-writes)."""
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": [r["consistency_token"] for r in receipts]}))


async def required_user(admin: httpx.AsyncClient) -> str:
    """A new user required to use MFA, once the audit log has the requirement (its consistency token)."""
    user_id, _ = await new_user(admin)
    await projected(admin, user_id, ok(await admin.post(f"/v1/users/{user_id}/mfa/require",
                                                        json={"enrollment_days": 7})))
    return user_id


async def audited_status(auditor: httpx.AsyncClient, user_id: str, status: str) -> None:
    """Returns once the audit log tells the user's status now as `status`: it follows writes by a moment."""
    async with asyncio.timeout(20):
        while ((found := await auditor.get(f"/v1/audit/users/{user_id}/state")).status_code == 404
               or ok(found)["status"] != status):
            await asyncio.sleep(0.05)


async def ndjson(client: httpx.AsyncClient, path: str, **params) -> list[dict]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def state(auditor: httpx.AsyncClient, user_id: str, at: datetime) -> dict:
    return ok(await auditor.get(f"/v1/audit/users/{user_id}/state", params={"at": at.isoformat()}))


async def test_a_users_mfa_state_at_past_moments(admin, auditor, portal, clock) -> None:
    user_id, email = await new_user(admin)
    created = clock.now()
    ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 2}))
    enrolling = clock.now()
    clock.advance(3 * DAY)
    expired = clock.now()
    ok(await admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 5}))
    extended = clock.now()
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    active = clock.now()
    ok(await admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 1}))
    reset = clock.now()
    last = ok(await admin.post(f"/v1/users/{user_id}/mfa/remove-requirement"))
    await projected(admin, user_id, last)

    expected = {created: ("none", False, False), enrolling: ("enrolling", True, False),
                expired: ("expired", True, False), extended: ("enrolling", True, False),
                active: ("active", True, True), reset: ("enrolling", True, False), clock.now(): ("none", False, False)}
    for moment, (status, required, was_set_up) in expected.items():
        found = await state(auditor, user_id, moment)
        assert (found["status"], found["required"], found["set_up"]) == (status, required, was_set_up), moment
        assert found["configured"] == was_set_up, "its deprecated name, served until the sunset"
        assert datetime.fromisoformat(found["as_of"]) == moment
    deadlines = [datetime.fromisoformat((await state(auditor, user_id, m))["deadline"]) for m in (enrolling, extended)]
    assert enrolling + 2 * DAY - timedelta(minutes=1) < deadlines[0] <= enrolling + 2 * DAY
    assert extended + 5 * DAY - timedelta(minutes=1) < deadlines[1] <= extended + 5 * DAY

    problem(await auditor.get(f"/v1/audit/users/{user_id}/state",
                              params={"at": (created - timedelta(hours=1)).isoformat()}), 404, "user_not_found")
    problem(await auditor.get(f"/v1/audit/users/{user_id}/state",
                              params={"at": (clock.now() + DAY).isoformat()}), 400, "moment_in_future")
    problem(await auditor.get(f"/v1/audit/users/{user_id}/state", params={"at": "2026-01-01T00:00:00"}),
            422, "validation_error")


async def test_compliance_at_a_past_moment(admin, auditor, portal, clock) -> None:
    enrolling_id, _ = await new_user(admin, enrollment_days=3)
    no_period_id, no_period_email = await new_user(admin, enrollment_days=None)
    set_up_id, set_up_email = await new_user(admin, enrollment_days=7)
    await set_up(portal, (await sign_in(portal, set_up_email))["challenge"], clock)
    free_id, _ = await new_user(admin)
    ours = {enrolling_id, no_period_id, set_up_id, free_id}
    await audited_status(auditor, set_up_id, "active")
    first = clock.now()
    clock.advance(4 * DAY)
    second = clock.now()
    removed = ok(await admin.post(f"/v1/users/{enrolling_id}/mfa/remove-requirement"))
    await set_up(portal, (await sign_in(portal, no_period_email))["challenge"], clock)
    await projected(admin, enrolling_id, removed)
    await audited_status(auditor, no_period_id, "active")

    async def not_set_up(at: datetime) -> dict[str, str]:
        lines = await ndjson(auditor, "/v1/audit/compliance", at=at.isoformat())
        assert all(line["status"] in ("enrolling", "expired", "required_no_period") for line in lines)
        assert [line["principal_id"] for line in lines] == sorted(line["principal_id"] for line in lines)
        return {line["principal_id"]: line["status"] for line in lines if line["principal_id"] in ours}

    assert await not_set_up(first) == {enrolling_id: "enrolling", no_period_id: "required_no_period"}
    assert await not_set_up(second) == {enrolling_id: "expired", no_period_id: "required_no_period"}
    assert await not_set_up(clock.now()) == {}


async def test_export_streams_a_users_events_in_order_with_filters_and_resumes(admin, auditor, portal,
                                                                                clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    prompt = await sign_in(portal, email)
    ok(await portal.post("/v1/portal/dismiss-prompt", json={"challenge": prompt["challenge"]}))
    extended = ok(await admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 3}))
    after_extend = clock.now()
    ok(await admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 2}))
    before_removal = clock.now()
    last = ok(await admin.post(f"/v1/users/{user_id}/mfa/remove-requirement"))
    await projected(admin, user_id, last)

    records = await ndjson(auditor, "/v1/audit/events", principal_id=user_id)
    # Identity and MFA events travel on different topics; the history tells them in the order they happened.
    assert [r["envelope"]["type"] for r in records] == ["UserCreated", "MFARequired", "EnrollmentPromptDismissed",
                                                        "EnrollmentExtended", "MFAReset", "MFARequirementRemoved"]
    places = [(datetime.fromisoformat(r["story_at"]), r["seq"]) for r in records]
    assert places == sorted(places) and len({r["seq"] for r in records}) == len(records)
    assert all(set(r) == {"seq", "story_at", "prev_hash", "hash", "envelope", "cursor"} for r in records)
    assert "password" not in json.dumps(records)

    by_type = await ndjson(auditor, "/v1/audit/events", principal_id=user_id, type=["MFAReset", "EnrollmentExtended"])
    assert [r["envelope"]["type"] for r in by_type] == ["EnrollmentExtended", "MFAReset"]
    by_user = await ndjson(auditor, "/v1/audit/events", principal_id=user_id, actor=f"user:{user_id}")
    assert [r["envelope"]["type"] for r in by_user] == ["EnrollmentPromptDismissed"]
    admin_actor = next(r for r in records if r["envelope"]["event_id"] in extended["event_ids"])["envelope"]["actor"]
    assert admin_actor.startswith("api_key:")
    assert len(await ndjson(auditor, "/v1/audit/events", principal_id=user_id, actor=admin_actor)) == 5
    window = await ndjson(auditor, "/v1/audit/events", principal_id=user_id, **{
        "from": after_extend.isoformat(), "to": before_removal.isoformat()})
    assert [r["envelope"]["type"] for r in window] == ["MFAReset"]

    first = await ndjson(auditor, "/v1/audit/events", principal_id=user_id, limit=2)
    rest = await ndjson(auditor, "/v1/audit/events", principal_id=user_id, cursor=first[-1]["cursor"])
    assert [r["envelope"] for r in first + rest] == [r["envelope"] for r in records]
    # `after` (deprecated): after the record with that seq, as clients resumed before cursors.
    resumed = await auditor.get("/v1/audit/events", params={"principal_id": user_id, "after": first[-1]["seq"]})
    assert "Deprecation" in resumed.headers and "Sunset" in resumed.headers
    assert [r["envelope"] for r in first] + [json.loads(line)["envelope"] for line in resumed.text.splitlines()] == [
        r["envelope"] for r in records]
    assert "Deprecation" not in (await auditor.get("/v1/audit/events", params={"limit": 1})).headers
    problem(await auditor.get("/v1/audit/events", params={"cursor": "bm90IGEgY3Vyc29y"}), 400, "invalid_cursor")
    problem(await auditor.get("/v1/audit/events", params={"cursor": first[-1]["cursor"], "after": 1}), 400,
            "invalid_cursor")

    problem(await auditor.get("/v1/audit/events", params={"type": "NoSuchEvent"}), 400, "unknown_event_type")
    problem(await auditor.get("/v1/audit/events", params={"from": before_removal.isoformat(),
                                                          "to": after_extend.isoformat()}), 400, "invalid_time_range")


def verify_audit(stack, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "mfaplane_gateway", "verify-audit", *args]
    return subprocess.run(argv, env=stack.service_env("gateway"), capture_output=True, text=True, timeout=120)


async def test_verification_passes_an_untouched_export_and_finds_an_edited_line(stack, admin, auditor,
                                                                                tmp_path: Path) -> None:
    user_id = await required_user(admin)
    export = tmp_path / "audit.ndjson"
    async with auditor.stream("GET", "/v1/audit/events") as response:
        with export.open("w") as file:
            async for line in response.aiter_lines():
                file.write(line + "\n")
    intact = verify_audit(stack, "--file", str(export))
    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact" in intact.stdout

    lines = export.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if user_id in line and "MFARequired" in line)
    record = json.loads(lines[target])
    record["envelope"]["payload"]["enrollment_days"] = 365
    export.write_text("\n".join(lines[:target] + [json.dumps(record)] + lines[target + 1:]) + "\n")
    tampered = verify_audit(stack, "--file", str(export))
    assert tampered.returncode == 1
    assert f"broken at record {record['seq']}: content does not match its hash" in tampered.stderr

    def without(seq: int) -> str:
        return "".join(line + "\n" for line in lines if json.loads(line)["seq"] != seq)

    export.write_text(without(2))
    assert "broken at record 2: record 2 is missing (found 3)" in verify_audit(stack, "--file", str(export)).stderr
    # Cutting the tail leaves a valid chain, but not the head an auditor noted down.
    export.write_text(without(max(json.loads(line)["seq"] for line in lines)))
    cut = verify_audit(stack, "--file", str(export))
    assert cut.returncode == 0 and cut.stdout.split()[-1] != intact.stdout.split()[-1]


def rechained(records: list[dict], start: int) -> list[str]:
    """The records with every hash from `start` on recomputed: an attacker with write access covering an edit."""
    for i in range(start, len(records)):
        records[i]["prev_hash"] = records[i - 1]["hash"] if i else audit_log.GENESIS
        records[i]["hash"] = audit_log.link_hash(records[i]["seq"], records[i]["prev_hash"], records[i]["envelope"])
    return [json.dumps(record) for record in records]


async def test_signatures_catch_an_edit_whose_chain_was_recomputed_and_a_forged_insert(stack, admin, auditor,
                                                                                       tmp_path: Path) -> None:
    """The hash chain shows that what is stored was not changed after the fact, unless the whole chain
    is computed again; the signatures show who emitted each event, which no recomputation can fake."""
    user_id = await required_user(admin)
    export = tmp_path / "audit.ndjson"
    async with auditor.stream("GET", "/v1/audit/events") as response:
        records = [json.loads(line) async for line in response.aiter_lines() if line]
    records.sort(key=lambda record: record["seq"])  # the chain's order, in which an attacker computes it again
    target = next(i for i, r in enumerate(records)
                  if r["envelope"]["type"] == "MFARequired" and r["envelope"]["payload"]["principal_id"] == user_id)
    assert records[target]["envelope"]["key_id"] == service_key(stack, "mfa").key_id, "mfa signed its event"

    edited = json.loads(json.dumps(records))
    edited[target]["envelope"]["payload"]["enrollment_days"] = 365
    export.write_text("\n".join(rechained(edited, target)) + "\n")
    result = verify_audit(stack, "--file", str(export))
    assert result.returncode == 1
    assert f"broken at record {records[target]['seq']}: signature not valid (bad_signature)" in result.stderr

    forged = json.loads(json.dumps(records))
    unsigned = {**forged[target], "envelope": {**forged[target]["envelope"], "key_id": None, "signature": None,
                                               "event_id": str(uuid.uuid4())}}
    forged.insert(target + 1, unsigned)
    for seq, record in enumerate(forged, 1):
        record["seq"] = seq
    export.write_text("\n".join(rechained(forged, target + 1)) + "\n")
    result = verify_audit(stack, "--file", str(export))
    assert result.returncode == 1
    assert f"broken at record {target + 2}: unsigned, after signed records" in result.stderr

    # Every signature stripped and the whole chain computed again: only --signed-from tells.
    stripped = [{**r, "envelope": {**r["envelope"], "key_id": None, "signature": None}} for r in records]
    export.write_text("\n".join(rechained(stripped, 0)) + "\n")
    passed = verify_audit(stack, "--file", str(export))
    assert passed.returncode == 0 and f"records 1 to {len(records)} carry no signature" in passed.stderr
    refused = verify_audit(stack, "--file", str(export), "--signed-from", "1")
    assert refused.returncode == 1
    assert "broken at record 1: unsigned, though every record from 1 is signed" in refused.stderr


async def test_verification_of_the_database_finds_an_edited_row(stack, admin) -> None:
    user_id, _ = await new_user(admin, enrollment_days=7)
    result = verify_audit(stack)
    assert result.returncode == 0 and "audit chain intact" in result.stdout, result.stderr

    pool = await db.create_pool(stack.infra.database_url, "gateway", max_size=1)
    try:
        async with pool.acquire() as conn:
            async with asyncio.timeout(20):
                while (seq := await conn.fetchval("SELECT seq FROM audit_log WHERE principal_id = $1 AND "
                                                  "type = 'MFARequired'", uuid.UUID(user_id))) is None:
                    await asyncio.sleep(0.05)
            edit = "UPDATE audit_log SET envelope = jsonb_set(envelope, '{payload,deadline}', 'null') WHERE seq = $1"
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(edit, seq)
            # An attacker with the table owner's rights, in a transaction rolled back afterwards.
            attack = conn.transaction()
            await attack.start()
            try:
                await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
                await conn.execute(edit, seq)
                _, _, broken = await audit_verify.verify(audit_log.stored_records(conn), public_keys(stack))
            finally:
                await attack.rollback()
    finally:
        await pool.close()
    assert broken == audit_log.BrokenLink(seq, "content does not match its hash")


@pytest.mark.parametrize("keys_from", ["SERVICE_PUBLIC_KEYS_FILE", "SERVICE_PUBLIC_KEYS"])
def test_an_auditor_verifies_with_only_the_database_and_the_public_keys(stack, keys_from: str) -> None:
    """No broker, no identity or mfa URL, no signing key, not even PATH: what an auditor with read access holds."""
    keys_file = stack.service_env("gateway")["SERVICE_PUBLIC_KEYS_FILE"]
    keys = {keys_from: keys_file if keys_from.endswith("_FILE") else Path(keys_file).read_text()}
    env = {"DATABASE_URL": stack.infra.database_url, "DATABASE_SCHEMA": "gateway", **keys}
    argv = [sys.executable, "-m", "mfaplane_gateway", "verify-audit"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "audit chain intact" in result.stdout, result.stderr
