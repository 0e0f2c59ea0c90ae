"""Scenario 2, event store append: single-event commands on distinct aggregates, 1, 8 and 32 writers.

`EventStore.append` itself (the code every command ends in), against PostgreSQL in a scratch
schema migrated like a service's: each call records the command id, inserts the event and its
outbox row, and commits. Every writer appends to new aggregates only, so there are no conflicts.
Writers are asyncio tasks in this one process, each with its own pooled connection (a service
is also one process; its pool holds 10 connections).

Raw limit: the same rows' bare insert-and-commit with asyncpg at the same concurrency: one
`INSERT` of an identical event row into a copy of the events table, autocommitted.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta

from bench.harness import BenchStack
from bench.runner import Measure, Row, closed_loop, latency_detail, log, percentile
from mfaplane_contracts.mfa_events import MFARequired, enrollment_id
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.event_store import Cause, EventStore

SCHEMA = "bench_append"
TARGET_AT_32 = 5000
TARGET_RATIO_AT_1 = 0.70
WARM_UP_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 32],
                        help="concurrent writers (default 1 8 32)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per level (default 8)")


def _event() -> MFARequired:
    return MFARequired(principal_id=uuid.uuid4(), scope="user_portal", principal_kind="user", enrollment_days=7,
                       deadline=datetime.now(UTC) + timedelta(days=7))


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    rows = []
    async with bench.scratch_schema(SCHEMA, []) as schema:
        pool = await bench.pool(schema, size=max(args.writers))
        try:
            await pool.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
            store = EventStore(pool, SystemClock())
            for writers in args.writers:
                system = await _measure(lambda i: _append(store), writers, args.seconds)
                bare = await _measure(lambda i: _raw_insert(pool), writers, args.seconds)
                log(f"append: {writers} writers: {system.rate:.0f} events/s ({latency_detail(system.latencies)}), "
                    f"raw {bare.rate:.0f}/s ({latency_detail(bare.latencies)})")
                p99_ms = percentile(system.latencies, 99) * 1000
                row = Row(
                    "2 event store append", f"{writers} writer{'s' * (writers > 1)}",
                    Measure(system.rate, "events/s", detail=f"p99 commit {p99_ms:.1f} ms"),
                    Measure(bare.rate, "rows/s", label="asyncpg one-row INSERT, autocommit",
                            detail=f"p99 {percentile(bare.latencies, 99) * 1000:.1f} ms"),
                    notes={"system": system.notes(), "raw": bare.notes()},
                )
                if writers == 32:
                    row.target, row.met = f">= {TARGET_AT_32:,} events/s", system.rate >= TARGET_AT_32
                if writers == 1:
                    row.target, row.met = f">= {TARGET_RATIO_AT_1:.0%} of raw", row.ratio >= TARGET_RATIO_AT_1
                rows.append(row)
        finally:
            await pool.close()
    return rows


async def _measure(operation, writers: int, seconds: float):
    await closed_loop(operation, concurrency=writers, seconds=WARM_UP_SECONDS)
    return await closed_loop(operation, concurrency=writers, seconds=seconds)


async def _append(store: EventStore) -> None:
    event = _event()
    cause = Cause(actor="admin:bench", correlation_id=uuid.uuid4(), command_id=uuid.uuid4())
    await store.append(enrollment_id(event.scope, event.principal_id), 0, [event], cause)


async def _raw_insert(pool) -> None:
    event = _event()
    await pool.execute(
        "INSERT INTO raw_events (event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, "
        "occurred_at, correlation_id, causation_id, command_id, actor, topic, payload) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        uuid.uuid4(), event.event_type, 1, event.aggregate_type, enrollment_id(event.scope, event.principal_id), 1,
        datetime.now(UTC), uuid.uuid4(), None, uuid.uuid4(), "admin:bench", event.topic, event.model_dump(mode="json"),
    )
