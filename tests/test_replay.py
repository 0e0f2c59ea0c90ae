"""`python -m mfaplane_gateway replay` rebuilds the read models from this run's real history.

It runs on a copy of the gateway's schema (audit log and live tables, copied in one snapshot), so
the shared stack keeps its tables; switching under live traffic is covered in
services/gateway/tests/test_rebuild.py.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import asyncpg
import httpx

from mfaplane_eventing import db
from mfaplane_gateway.__main__ import SPEC
from portal_flows import new_user, ok, set_up, sign_in


async def _copy_gateway_schema(database_url: str, schema: str) -> dict[str, str]:
    """Copies the audit log and the live read models into `schema`'s first versions, with how far the read
    models have got (projected_versions: the replay leaves what they have not applied to the projector),
    consistently."""
    await db.migrate(database_url, schema, SPEC.migration_dirs())
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            live = {r["name"]: r["current_table"] for r in await conn.fetch("SELECT * FROM gateway.read_models")}
            await conn.execute(f"INSERT INTO {schema}.audit_log SELECT * FROM gateway.audit_log")
            await conn.execute(f"INSERT INTO {schema}.projected_versions SELECT * FROM gateway.projected_versions")
            for name, table in live.items():
                await conn.execute(f"INSERT INTO {schema}.{name}_v1 SELECT * FROM gateway.{table}")
        return live
    finally:
        await conn.close()


async def test_replay_of_the_whole_history_yields_the_live_rows(stack, admin, portal, clock) -> None:
    user_id, email = await new_user(admin, enrollment_days=7)
    prompt = await sign_in(portal, email)
    ok(await portal.post("/v1/portal/dismiss-prompt", json={"challenge": prompt["challenge"]}))
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    system = ok(await admin.post("/v1/systems", json={"name": "replayed", "kind": "linux"}))
    switched = ok(await admin.put(f"/v1/systems/{system['aggregate_id']}/mfa", json={"enabled": True}))
    reset = ok(await admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 2}))
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": [switched["consistency_token"],
                                                                           reset["consistency_token"]]}))
    schema = f"gateway_replay_{uuid.uuid4().hex[:8]}"
    await _copy_gateway_schema(stack.infra.database_url, schema)

    argv = [sys.executable, "-m", "mfaplane_gateway", "replay", "--batch-size", "100"]
    done = subprocess.run(argv, env=stack.service_env("gateway", {"DATABASE_SCHEMA": schema}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "principals: principals_v1 -> principals_v2" in done.stdout

    conn = await asyncpg.connect(stack.infra.database_url, server_settings={"search_path": schema})
    try:
        assert dict(await conn.fetch("SELECT name, current_table FROM read_models")) == {
            "principals": "principals_v2", "resources": "resources_v2"}
        for name in ("principals", "resources"):
            differ = await conn.fetchval(f"SELECT count(*) FROM ((TABLE {name}_v1 EXCEPT ALL TABLE {name}_v2) "
                                         f"UNION ALL (TABLE {name}_v2 EXCEPT ALL TABLE {name}_v1)) AS d")
            assert differ == 0, name
        user = await conn.fetchrow("SELECT required, configured FROM principals_v2 WHERE principal_id = $1",
                                   uuid.UUID(user_id))
        assert (user["required"], user["configured"]) == (True, False)
        assert await conn.fetchval("SELECT mfa_enabled FROM resources_v2 WHERE system_id = $1",
                                   uuid.UUID(system["aggregate_id"]))
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def test_projection_lag_is_a_metric(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.metrics_url("gateway")) as http:
        metrics = (await http.get("/metrics")).text
    lag = next(line for line in metrics.splitlines() if line.startswith("mfaplane_projection_lag_seconds "))
    assert float(lag.split()[1]) >= 0
