"""Rebuilding the read models from the audit log while events keep arriving, then switching."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

import mfaplane_gateway
from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.service_keys import TrustedKeys
from mfaplane_gateway.audit import audit_log, audit_verify
from mfaplane_gateway.read_models import projector, registry, replay

KEYS = {"principals": "principal_id", "resources": "system_id"}
MIGRATIONS = Path(mfaplane_gateway.__file__).parent / "migrations"


async def rows(pool: asyncpg.Pool, table: str, key: str) -> list[dict]:
    return [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY {key}")]


async def tables_in_force(pool: asyncpg.Pool) -> dict[str, str]:
    return await registry.current(pool)


async def test_rebuild_under_live_traffic_matches_the_live_projection(gateway_pool, history, handle) -> None:
    events = history.random(random.Random(11))
    assert len(events) > 200
    await handle(gateway_pool, events[:150])
    rebuilding = asyncio.create_task(replay.rebuild(gateway_pool, batch=7))
    for envelope in events[150:200]:  # while the rebuild reads, as far as it takes
        await handle(gateway_pool, [envelope])
        await asyncio.sleep(0)
    rebuilt = await rebuilding
    for envelope in events[200:]:  # after the switch, within the grace period
        await handle(gateway_pool, [envelope])

    assert rebuilt.previous == {"principals": "principals_v1", "resources": "resources_v1"}
    assert rebuilt.current == {"principals": "principals_v2", "resources": "resources_v2"}
    assert await tables_in_force(gateway_pool) == rebuilt.current
    assert 150 <= rebuilt.position <= 200
    # Events after the switch reach both versions during the grace period, so the old table is the
    # reference: every event applied once, in order (dismissal counts would show a double).
    for name, key in KEYS.items():
        live = await rows(gateway_pool, rebuilt.previous[name], key)
        assert live and await rows(gateway_pool, rebuilt.current[name], key) == live
    assert await gateway_pool.fetchval("SELECT count(*) FROM audit_log") == len(events)


@pytest.mark.parametrize("batch", [1, 10_000])
async def test_a_rebuild_in_any_batch_size_matches_the_event_by_event_projection(gateway_pool, history, handle,
                                                                                 batch) -> None:
    # Few principals and many changes: a batch folds sets, resets and repeated dismissals of each row.
    events = history.random(random.Random(15), users=4, steps=300)
    await handle(gateway_pool, events)
    rebuilt = await replay.rebuild(gateway_pool, batch=batch)
    assert rebuilt.position == len(events)
    for name, key in KEYS.items():
        live = await rows(gateway_pool, rebuilt.previous[name], key)
        assert live and await rows(gateway_pool, rebuilt.current[name], key) == live
    assert max(r["dismissals"] for r in await rows(gateway_pool, "principals_v1", "principal_id")) > 1


@pytest.mark.parametrize("batch", [7, 10_000])
async def test_projecting_a_batch_at_once_matches_a_rebuild_and_keeps_the_chain(gateway_pool, history,
                                                                                 batch) -> None:
    """What the consumer's batches take: the live projection of a run of events, many per row,
    against a rebuild one record at a time (which equals event-by-event handling, as tested above)."""
    events = history.random(random.Random(16), users=4, steps=300)
    for start in range(0, len(events), batch):
        for handler in (audit_log.handle_batch, projector.handle_batch):
            async with gateway_pool.acquire() as conn, conn.transaction():
                await handler(conn, events[start:start + batch], SystemClock())
    rebuilt = await replay.rebuild(gateway_pool, batch=1)
    for name, key in KEYS.items():
        live = await rows(gateway_pool, rebuilt.previous[name], key)
        assert live and await rows(gateway_pool, rebuilt.current[name], key) == live
    assert max(r["dismissals"] for r in await rows(gateway_pool, "principals_v1", "principal_id")) > 1
    chain, _, broken = await audit_verify.verify(audit_log.stored_records(gateway_pool), TrustedKeys({}))
    assert broken is None and chain.seq == len(events)
    versions = await gateway_pool.fetch("SELECT aggregate_id, version FROM projected_versions")
    assert {r["aggregate_id"]: r["version"] for r in versions} == {e.aggregate_id: e.aggregate_version
                                                                   for e in events}


async def test_the_switch_waits_for_an_event_being_projected_and_for_the_audit_log_to_have_it(
        gateway_pool, history, handle) -> None:
    events = history.random(random.Random(14), steps=30)
    await handle(gateway_pool, events[:-1])
    async with gateway_pool.acquire() as conn:
        projecting = conn.transaction()
        await projecting.start()
        await projector.handle_batch(conn, events[-1:], SystemClock())  # holds the read-models lock until it commits
        rebuilding = asyncio.create_task(replay.rebuild(gateway_pool))
        await asyncio.sleep(0.5)
        assert not rebuilding.done()
        await projecting.commit()
    await asyncio.sleep(0.5)
    assert not rebuilding.done(), "the read models have an event the audit log does not"
    async with gateway_pool.acquire() as conn, conn.transaction():
        await audit_log.handle_batch(conn, events[-1:], SystemClock())
    rebuilt = await rebuilding
    assert rebuilt.position == len(events)
    for name, key in KEYS.items():
        live = await rows(gateway_pool, rebuilt.previous[name], key)
        assert await rows(gateway_pool, rebuilt.current[name], key) == live


async def each(pool: asyncpg.Pool, handler, envelopes: list) -> None:
    """One consumer's handling of each event, one transaction each."""
    for envelope in envelopes:
        async with pool.acquire() as conn, conn.transaction():
            await handler(conn, [envelope], SystemClock())


async def assert_rebuilt_as_live(pool: asyncpg.Pool, rebuilt: replay.Rebuilt) -> None:
    """The previous tables, kept in step during the grace period, are the reference: every event applied
    once, in order (dismissal counts would show a double)."""
    for name, key in KEYS.items():
        live = await rows(pool, rebuilt.previous[name], key)
        assert live and await rows(pool, rebuilt.current[name], key) == live


async def test_records_the_read_models_have_not_applied_yet_wait_or_are_left_to_the_projector(gateway_pool,
                                                                                               history) -> None:
    """The audit consumer ahead of the read models': the rebuild reads every record and applies those whose
    events are projected, the others once they are (each aggregate's in order), or, if they are not by the
    switch, the projector applies them after it, to the new tables."""
    events = history.random(random.Random(17), users=4, steps=200)
    half, three_quarters = len(events) // 2, 3 * len(events) // 4
    await each(gateway_pool, audit_log.handle_batch, events)
    await each(gateway_pool, projector.handle_batch, events[:half])
    rebuilding = asyncio.create_task(replay.rebuild(gateway_pool, batch=7))
    for envelope in events[half:three_quarters]:  # while the rebuild reads
        await each(gateway_pool, projector.handle_batch, [envelope])
        await asyncio.sleep(0)
    rebuilt = await rebuilding
    assert rebuilt.position == len(events)
    await each(gateway_pool, projector.handle_batch, events[three_quarters:])
    await assert_rebuilt_as_live(gateway_pool, rebuilt)


async def test_the_switch_waits_for_the_audit_log_to_hold_what_the_read_models_have(gateway_pool, history) -> None:
    """The read models' consumer ahead of the audit log's: the rebuild, which reads the log, switches once
    the log has caught up, so that nothing projected is left out of the new tables."""
    events = history.random(random.Random(19), users=4, steps=200)
    half = len(events) // 2
    await each(gateway_pool, projector.handle_batch, events)
    await each(gateway_pool, audit_log.handle_batch, events[:half])
    rebuilding = asyncio.create_task(replay.rebuild(gateway_pool, batch=7))
    for envelope in events[half:]:
        await each(gateway_pool, audit_log.handle_batch, [envelope])
        await asyncio.sleep(0)
    rebuilt = await rebuilding
    await assert_rebuilt_as_live(gateway_pool, rebuilt)
    assert await gateway_pool.fetchval("SELECT count(*) FROM awaiting_audit") == 0


async def test_a_replay_refuses_to_switch_while_the_audit_log_lacks_projected_events(gateway_pool, history, handle,
                                                                                    monkeypatch) -> None:
    """An audit consumer stopped, or one that dead-lettered an event: the switch would lose it."""
    monkeypatch.setattr(replay, "AUDIT_WAIT_SECONDS", 0)
    monkeypatch.setattr(replay, "LOCKED_AUDIT_WAIT_SECONDS", 0)
    events = history.random(random.Random(20), steps=20)
    await handle(gateway_pool, events[:-1])
    await each(gateway_pool, projector.handle_batch, events[-1:])
    with pytest.raises(replay.AuditBehind, match="1 event"):
        await replay.rebuild(gateway_pool)
    assert await tables_in_force(gateway_pool) == {"principals": "principals_v1", "resources": "resources_v1"}

    await each(gateway_pool, audit_log.handle_batch, events[-1:])
    assert (await replay.rebuild(gateway_pool)).current == {"principals": "principals_v2", "resources": "resources_v2"}


async def test_after_the_grace_period_only_the_current_tables_are_written(gateway_pool, history, handle) -> None:
    events = history.random(random.Random(12), steps=40)
    await handle(gateway_pool, events)
    await replay.rebuild(gateway_pool)
    await gateway_pool.execute("UPDATE read_models SET previous_until = now() - interval '1 second'")
    user = events[0].payload["user_id"]
    email = "SELECT email FROM {} WHERE principal_id = $1"
    before = await gateway_pool.fetchval(email.format("principals_v1"), uuid.UUID(user))
    await handle(gateway_pool, [history.envelope(identity.UserUpdated(user_id=user, email="new@example.com",
                                                                      name="New Name"))])
    assert await gateway_pool.fetchval(email.format("principals_v2"), uuid.UUID(user)) == "new@example.com"
    assert await gateway_pool.fetchval(email.format("principals_v1"), uuid.UUID(user)) == before != "new@example.com"


async def test_a_second_rebuild_drops_the_version_before_the_previous(gateway_pool, history, handle,
                                                                       monkeypatch) -> None:
    await handle(gateway_pool, history.random(random.Random(13), steps=20))
    await replay.rebuild(gateway_pool)
    second = await replay.rebuild(gateway_pool)
    assert second.current == {"principals": "principals_v3", "resources": "resources_v3"}
    tables = {r["tablename"] for r in await gateway_pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ '_v[0-9]+$'")}
    assert tables == {"principals_v2", "principals_v3", "resources_v2", "resources_v3"}
    for name, table in registry.LIVE_TABLES.items():
        monkeypatch.setitem(registry.LIVE_TABLES, name, table)
    await registry.refresh(gateway_pool)
    assert registry.LIVE_TABLES == second.current


async def test_only_one_replay_runs_at_a_time(gateway_pool) -> None:
    async with gateway_pool.acquire() as holder:
        assert await holder.try_session_lock("mfaplane-replay")
        with pytest.raises(replay.ReplayRunning):
            await replay.rebuild(gateway_pool)
        await holder.execute("SELECT pg_advisory_unlock(hashtext('mfaplane-replay'))")


def test_versions_are_numbered() -> None:
    assert replay.version("principals_v9", 1) == "principals_v10"
    with pytest.raises(ValueError):
        replay.version("principals; DROP TABLE audit_log", 1)


async def index_definitions(pool: asyncpg.Pool, table: str) -> set[str]:
    return {r["definition"].split(" USING ", 1)[1] for r in await pool.fetch(
        "SELECT indexdef AS definition FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
        table)}


async def statistics_targets(pool: asyncpg.Pool, table: str) -> dict[str, int]:
    return {r["attname"]: r["attstattarget"] for r in await pool.fetch(
        "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = $1::regclass AND attstattarget > 0",
        table)}


async def test_a_rebuilt_table_keeps_the_indexes_and_statistics_targets_of_the_one_it_replaces(gateway_pool) -> None:
    rebuilt = await replay.rebuild(gateway_pool)

    for name, table in rebuilt.current.items():
        previous = rebuilt.previous[name]
        assert await index_definitions(gateway_pool, table) == await index_definitions(gateway_pool, previous)
        assert await statistics_targets(gateway_pool, table) == await statistics_targets(gateway_pool, previous)
    assert await statistics_targets(gateway_pool, rebuilt.current["principals"]) == {"email": 1000, "name": 1000}


async def test_the_page_index_migration_also_replaces_the_index_of_a_table_a_replay_made(infra, tmp_path) -> None:
    before = tmp_path / "mfaplane_gateway" / "migrations"  # the same migration names as the real folder's
    before.mkdir(parents=True)
    for migration in sorted(MIGRATIONS.glob("*.sql")):
        if migration.name < "0006" or migration.name == "0015_audit_consumer.sql":  # 0015: what a replay reads
            (before / migration.name).write_text(migration.read_text())
    schema = f"gateway_pages_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, before])
    pool = await db.create_pool(infra.database_url, schema)
    try:
        rebuilt = await replay.rebuild(pool)  # principals_v2, its indexes named by PostgreSQL
        await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, MIGRATIONS])

        for table in (rebuilt.current["principals"], rebuilt.previous["principals"]):
            email_order = [d for d in await index_definitions(pool, table) if "lower(email)" in d]
            assert email_order == ["btree (kind, lower(email), principal_id) INCLUDE (email, name) "
                                   "WHERE ((NOT deleted) AND (email IS NOT NULL))"]
            assert await statistics_targets(pool, table) == {"email": 1000, "name": 1000}
    finally:
        await pool.close()
        conn = await asyncpg.connect(infra.database_url)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.mark.parametrize("deletion_first", [True, False])
async def test_a_deletion_and_an_enrollment_event_give_the_same_row_in_either_order(gateway_pool, history,
                                                                                    deletion_first) -> None:
    """identity's topic and mfa's are not ordered with respect to each other: the projection may meet a
    user's deletion before an enrollment event that the audit log holds before it, or after it."""
    user = uuid.uuid4()
    created = history.envelope(identity.UserCreated(user_id=user, email="gone@example.com", name="Gone"))
    required = history.envelope(mfa.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                                enrollment_days=7, deadline=history.now + timedelta(days=7)))
    deleted = history.envelope(identity.UserDeleted(user_id=user))
    async with gateway_pool.acquire() as conn, conn.transaction():
        await audit_log.handle_batch(conn, [created, required, deleted], SystemClock())
    for envelope in (created, deleted, required) if deletion_first else (created, required, deleted):
        async with gateway_pool.acquire() as conn, conn.transaction():
            await projector.handle_batch(conn, [envelope], SystemClock())

    rebuilt = await replay.rebuild(gateway_pool)
    live = await rows(gateway_pool, rebuilt.previous["principals"], "principal_id")
    assert await rows(gateway_pool, rebuilt.current["principals"], "principal_id") == live
    assert [(r["deleted"], r["required"]) for r in live] == [(True, False)]
