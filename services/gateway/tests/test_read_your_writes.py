"""A bulk's consistency token on the gateway's own tables: it waits while its operation runs and until
each change it names is projected and in the audit log, is then settled for good, and waits for nothing
once its changes are kept no longer (or for an id never issued). A token this API did not return is
refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts.envelope import Envelope
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.clock import SystemClock
from mfaplane_gateway.audit import audit_log
from mfaplane_gateway.read_models.read_your_writes import (
    KEPT_FOR,
    USER_BULK_SCOPE,
    bulk_token,
    delete_expired_sets,
    record_set,
    token,
    wait_for,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WAIT = 0.05


async def project(pool: asyncpg.Pool, aggregate_id: str, version: int) -> None:
    """What the read models' consumer records of an event."""
    await pool.execute("INSERT INTO projected_versions (aggregate_id, version) VALUES ($1, $2) "
                       "ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version", aggregate_id, version)


async def audit(pool: asyncpg.Pool, aggregate_id: str, version: int) -> None:
    """What the audit log's consumer records of an event: the event."""
    envelope = Envelope(event_id=uuid.uuid4(), type="SystemMFAEnabled", schema_version=1, aggregate_type="system",
                        aggregate_id=aggregate_id, aggregate_version=version, occurred_at=T0,
                        correlation_id=uuid.uuid4(), actor="api_key:tests",
                        payload=identity.SystemMFAEnabled(system_id=uuid.uuid4()).model_dump(mode="json"))
    async with pool.acquire() as conn, conn.transaction():
        await audit_log.handle_batch(conn, [envelope], SystemClock())


async def record(pool: asyncpg.Pool, aggregate_id: str, version: int) -> None:
    await project(pool, aggregate_id, version)
    await audit(pool, aggregate_id, version)


async def refusal(pool: asyncpg.Pool, tokens: list[str]) -> Rejected:
    with pytest.raises(Rejected) as refused:
        await wait_for(pool, tokens, WAIT)
    return refused.value


async def test_a_systems_bulk_token_waits_for_each_change_then_stays_settled(gateway_pool) -> None:
    set_id = uuid.uuid4()
    await record_set(gateway_pool, set_id, T0, [("system-a", 2), ("system-b", 1)])
    await record(gateway_pool, "system-a", 2)
    assert (await refusal(gateway_pool, [bulk_token(set_id)])).code == "projection_behind"

    await record(gateway_pool, "system-b", 1)
    await wait_for(gateway_pool, [bulk_token(set_id), bulk_token(set_id)], WAIT)
    await gateway_pool.execute("DELETE FROM projected_versions")  # settled: the changes are not looked at again
    await wait_for(gateway_pool, [bulk_token(set_id)], 0)


async def test_a_set_kept_no_longer_is_deleted_and_its_token_then_waits_for_nothing(gateway_pool) -> None:
    set_id = uuid.uuid4()
    await record_set(gateway_pool, set_id, T0, [("system-c", 5)])
    assert not await delete_expired_sets(gateway_pool, T0 + KEPT_FOR - timedelta(seconds=1))
    assert (await refusal(gateway_pool, [bulk_token(set_id)])).code == "projection_behind"

    await delete_expired_sets(gateway_pool, T0 + KEPT_FOR)
    assert await gateway_pool.fetchval("SELECT count(*) FROM consistency_set_changes") == 0
    await wait_for(gateway_pool, [bulk_token(set_id), bulk_token(uuid.uuid4())], WAIT)


async def test_a_user_bulk_token_answers_operation_running_until_its_items_are_applied(gateway_pool) -> None:
    operation_id, user_id = uuid.uuid4(), uuid.uuid4()
    await gateway_pool.execute("INSERT INTO bulk_operations (operation_id, action, enrollment_days, actor, created_at) "
                               "VALUES ($1, 'require', 7, 'api_key:tests', now())", operation_id)
    await gateway_pool.execute("INSERT INTO bulk_operation_items (operation_id, user_id) VALUES ($1, $2)",
                               operation_id, user_id)
    running = await refusal(gateway_pool, [bulk_token(operation_id)])
    assert (running.code, running.kind, running.extra["retry_after"]) == ("operation_running", Refusal.NOT_READY, 1)

    # mfa answered 5xx: the item is tried again when its lease runs out, and the answer says so.
    await gateway_pool.execute("UPDATE bulk_operation_items SET reason = 'service_unavailable', "
                               "claimed_until = now() + interval '40 seconds'")
    assert (await refusal(gateway_pool, [bulk_token(operation_id)])).extra["retry_after"] > 30

    await gateway_pool.execute("UPDATE bulk_operation_items SET state = 'done', reason = NULL, changed = true, "
                               "version = 3, claimed_until = NULL")
    assert (await refusal(gateway_pool, [bulk_token(operation_id)])).code == "projection_behind"
    await record(gateway_pool, f"{USER_BULK_SCOPE}:{user_id}", 3)
    await wait_for(gateway_pool, [bulk_token(operation_id)], WAIT)


@pytest.mark.parametrize("first", [project, audit], ids=["projected first", "audited first"])
async def test_a_token_waits_for_both_the_read_models_and_the_audit_log(gateway_pool, first) -> None:
    """Two consumer groups write them, either ahead: a client that reads the audit history with its token
    after a write finds the write there, as in the lists."""
    second = audit if first is project else project
    await first(gateway_pool, "system-e", 1)
    assert (await refusal(gateway_pool, [token("system-e", 1)])).code == "projection_behind"

    await second(gateway_pool, "system-e", 1)
    await wait_for(gateway_pool, [token("system-e", 1)], WAIT)


async def test_an_event_audited_again_out_of_order_keeps_the_token_satisfied(gateway_pool) -> None:
    """A dead-lettered event republished (docs/operations.md) reaches the log after later versions."""
    await project(gateway_pool, "system-f", 3)
    await audit(gateway_pool, "system-f", 3)
    await audit(gateway_pool, "system-f", 2)
    await wait_for(gateway_pool, [token("system-f", 3)], WAIT)


@pytest.mark.parametrize("token", ["abc@99999999999", "abc@2147483648", "abc@²", "abc@" + "9" * 5000, "abc@",
                                   "@1", "abc@-1", "abc@ 1", "bulk:not-an-id"])
async def test_a_token_this_api_did_not_return_is_refused_before_any_wait(gateway_pool, token: str) -> None:
    refused = await refusal(gateway_pool, ["system-d@1", token])
    assert (refused.code, refused.kind) == ("invalid_consistency_token", Refusal.INVALID)
