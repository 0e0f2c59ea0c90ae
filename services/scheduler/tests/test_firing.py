"""Firing due timers against a real PostgreSQL: once per timer, with replicas, after downtime."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import mfaplane_scheduler
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope
from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.event_store import EventStore
from mfaplane_scheduler.firing import TAKE_DUE, fire_due, timer_aggregate_id
from mfaplane_scheduler.timer_updates import batch_handler

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MIGRATIONS = Path(mfaplane_scheduler.__file__).parent / "migrations"


@pytest.fixture(scope="module")
async def store(infra):
    schema = f"scheduler_test_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, MIGRATIONS])
    pool = await db.create_pool(infra.database_url, schema, max_size=20)
    yield EventStore(pool, SystemClock())
    await pool.close()


def _envelope(event: mfa._EnrollmentEvent, at: datetime = NOW, version: int = 1) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(), type=event.event_type, schema_version=1, aggregate_type="enrollment",
        aggregate_id=mfa.enrollment_id(event.scope, event.principal_id), aggregate_version=version, occurred_at=at,
        correlation_id=uuid.uuid4(), actor="admin:test", payload=event.model_dump(mode="json"),
    )


async def _receive(store: EventStore, event: mfa._EnrollmentEvent, at: datetime = NOW, version: int = 1) -> None:
    async with store.pool.acquire() as conn, conn.transaction():
        await batch_handler([86400])(conn, [_envelope(event, at, version)])


async def _timers(store: EventStore, principals: list[uuid.UUID]) -> list[tuple]:
    rows = await store.pool.fetch("SELECT principal_id, timer, deadline, due_at FROM deadline_timers "
                                  "WHERE principal_id = ANY($1::uuid[]) ORDER BY 1, 2", principals)
    return [tuple(row) for row in rows]


def _required(principal: uuid.UUID, deadline: datetime) -> mfa.MFARequired:
    return mfa.MFARequired(principal_id=principal, scope="user_portal", principal_kind="user", enrollment_days=7,
                           deadline=deadline)


async def _fired(store: EventStore, principal: uuid.UUID) -> list[tuple[str, datetime, datetime]]:
    events = (await store.history(timer_aggregate_id(f"user_portal:{principal}"))).events
    return [(e.type, e.body().deadline, e.body().due_at) for e in events]


async def test_each_due_timer_fires_once_with_its_due_time(store) -> None:
    principal = uuid.uuid4()
    await _receive(store, _required(principal, NOW + 7 * DAY))
    await fire_due(store, NOW + 5 * DAY, 100)
    assert await _fired(store, principal) == []
    await fire_due(store, NOW + 6 * DAY, 100)
    await fire_due(store, NOW + 6 * DAY + timedelta(hours=1), 100)
    assert await _fired(store, principal) == [("EnrollmentExpiring", NOW + 7 * DAY, NOW + 6 * DAY)]
    await fire_due(store, NOW + 30 * DAY, 100)
    assert [f[0] for f in await _fired(store, principal)] == ["EnrollmentExpiring", "EnrollmentExpired"]
    outbox = await store.pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1",
                                       timer_aggregate_id(f"user_portal:{principal}"))
    assert outbox == 2


async def test_timers_missed_during_downtime_fire_once_oldest_first(store) -> None:
    principal = uuid.uuid4()
    await _receive(store, _required(principal, NOW + 7 * DAY))
    await fire_due(store, NOW + 60 * DAY, 100)  # the scheduler was down for both
    assert await _fired(store, principal) == [
        ("EnrollmentExpiring", NOW + 7 * DAY, NOW + 6 * DAY),
        ("EnrollmentExpired", NOW + 7 * DAY, NOW + 7 * DAY),
    ]


async def test_an_extension_before_the_reminder_replaces_the_old_timers(store) -> None:
    principal = uuid.uuid4()
    await _receive(store, _required(principal, NOW + 7 * DAY))
    extended = mfa.EnrollmentExtended(principal_id=principal, scope="user_portal", enrollment_days=14,
                                      deadline=NOW + 2 * DAY + 14 * DAY)
    await _receive(store, extended, at=NOW + 2 * DAY)
    await fire_due(store, NOW + 10 * DAY, 100)
    assert await _fired(store, principal) == [], "the old reminder and expiry never fire"
    await fire_due(store, NOW + 15 * DAY, 100)
    assert await _fired(store, principal) == [("EnrollmentExpiring", NOW + 16 * DAY, NOW + 15 * DAY)]


async def test_a_firing_says_the_enrollment_version_that_set_its_deadline(store) -> None:
    principal = uuid.uuid4()
    await _receive(store, _required(principal, NOW + 7 * DAY))
    await _receive(store, mfa.EnrollmentExtended(principal_id=principal, scope="user_portal", enrollment_days=14,
                                                 deadline=NOW + 14 * DAY), version=2)
    await fire_due(store, NOW + 14 * DAY, 100)
    events = (await store.history(timer_aggregate_id(f"user_portal:{principal}"))).events
    assert [(e.type, e.schema_version, e.body().deadline, e.body().enrollment_version) for e in events] == [
        ("EnrollmentExpiring", 2, NOW + 14 * DAY, 2), ("EnrollmentExpired", 2, NOW + 14 * DAY, 2)]


async def test_a_batch_of_changes_leaves_the_timers_one_by_one_handling_leaves(store) -> None:
    by_one, batched = [uuid.uuid4(), uuid.uuid4()], [uuid.uuid4(), uuid.uuid4()]

    def changes(first: uuid.UUID, second: uuid.UUID) -> list[Envelope]:
        return [_envelope(_required(first, NOW + 7 * DAY)),
                _envelope(mfa.EnrollmentExtended(principal_id=first, scope="user_portal", enrollment_days=14,
                                                 deadline=NOW + DAY + 14 * DAY), at=NOW + DAY),
                _envelope(_required(second, NOW + 7 * DAY)),
                _envelope(mfa.MFARequirementRemoved(principal_id=second, scope="user_portal"), at=NOW + DAY)]

    for envelope in changes(*by_one):
        async with store.pool.acquire() as conn, conn.transaction():
            await batch_handler([86400])(conn, [envelope])
    async with store.pool.acquire() as conn, conn.transaction():
        await batch_handler([86400])(conn, changes(*batched))

    renamed = dict(zip(batched, by_one, strict=True))
    assert sorted((renamed[p], *rest) for p, *rest in await _timers(store, batched)) == await _timers(store, by_one)
    assert [t[1] for t in await _timers(store, batched[:1])] == ["expiry", "reminder:86400"]


async def test_concurrent_replicas_fire_each_timer_exactly_once(store) -> None:
    principals = [uuid.uuid4() for _ in range(200)]
    for principal in principals:
        await _receive(store, _required(principal, NOW + 7 * DAY))
    await asyncio.gather(*(fire_due(store, NOW + 8 * DAY, 25) for _ in range(8)))
    while await fire_due(store, NOW + 8 * DAY, 25):
        pass
    counts = await store.pool.fetch(
        "SELECT aggregate_id, count(*) AS n FROM events WHERE aggregate_id = ANY($1::text[]) GROUP BY 1",
        [timer_aggregate_id(f"user_portal:{p}") for p in principals],
    )
    assert len(counts) == 200 and {row["n"] for row in counts} == {2}


async def test_claiming_due_timers_reads_the_index_not_every_pending_timer(store) -> None:
    """100,000 pending timers: the claim walks the due_at index from the start and stops at the limit."""
    await store.pool.execute(
        "INSERT INTO deadline_timers (enrollment_id, timer, principal_id, scope, deadline, due_at) "
        "SELECT 'load:' || i, 'expiry', gen_random_uuid(), 'user_portal', $1::timestamptz + i * interval '1 second', "
        "$1::timestamptz + i * interval '1 second' FROM generate_series(1, 100000) AS i",
        NOW + 400 * DAY,
    )
    await store.pool.execute("ANALYZE deadline_timers")
    async with store.pool.acquire() as conn:
        taking = conn.transaction()
        await taking.start()
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {TAKE_DUE}", NOW + 401 * DAY, 100)
        await taking.rollback()  # EXPLAIN ANALYZE deleted them
    scans = list(_nodes(plan[0]["Plan"]))
    index_scans = [n for n in scans if n.get("Index Name") == "deadline_timers_due"]
    assert index_scans, f"expected the due_at index, got {[n['Node Type'] for n in scans]}"
    assert all(n["Actual Rows"] <= 100 for n in index_scans), "no more rows read than the batch takes"
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], "the deletion finds its rows by key"
    await store.pool.execute("DELETE FROM deadline_timers WHERE enrollment_id LIKE 'load:%'")


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
