"""Scenario 3, projection rebuild: the gateway's `replay` over M audit-log records.

Before (not timed): a scratch schema migrated like the gateway's gets M synthetic but valid
audit records (real envelopes of M/10 users, ten events each: UserCreated, MFARequired,
EnrollmentExpiring, EnrollmentPromptDismissed, TOTPSecretIssued, TOTPEnrolled and four
TOTPVerified, interleaved across users), hash-chained with `audit_log.link_hash`, loaded by COPY,
and the read models' versions as if they had applied them all (`projected_versions`).
Timed: `mfaplane_gateway.read_models.replay.rebuild`, the function `python -m mfaplane_gateway replay` runs,
from start to switch.

Raw limit: reading the same rows (seq, envelope) with an asyncpg cursor, JSON decoded by the same
codec the gateway's pool uses.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.harness import GATEWAY_MIGRATIONS, BenchStack
from bench.runner import Measure, Row, log
from mfaplane_contracts.envelope import Envelope
from mfaplane_gateway.audit import audit_log
from mfaplane_gateway.read_models import replay

SCHEMA = "bench_replay"
EVENTS_PER_USER = 10
BLOCK = 100  # users whose events are interleaved
TARGET_PER_SECOND = 50_000
COPY_BATCH = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=500_000, help="audit records to replay (default 500,000)")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def user_history(start: datetime) -> list[tuple[str, str, str, str, dict]]:
    """(type, aggregate_type, aggregate_id, actor, payload) of one user's ten events."""
    user, secret = str(uuid.uuid4()), str(uuid.uuid4())
    enrollment = f"user_portal:{user}"
    deadline = _iso(start + timedelta(days=7))
    step = int(start.timestamp()) // 30
    subject = {"principal_id": user, "scope": "user_portal"}
    history = [
        ("UserCreated", "user", user, "admin:bench",
         {"user_id": user, "email": f"replay-{user[:8]}@bench.example.com", "name": f"Replay {user[:8]}"}),
        ("MFARequired", "enrollment", enrollment, "admin:bench",
         {**subject, "principal_kind": "user", "enrollment_days": 7, "deadline": deadline, "already_set_up": False}),
        ("EnrollmentExpiring", "deadline_timer", enrollment, "system:scheduler",
         {**subject, "deadline": deadline, "due_at": _iso(start + timedelta(days=6))}),
        ("EnrollmentPromptDismissed", "enrollment", enrollment, f"user:{user}", {**subject, "days_remaining": 6}),
        ("TOTPSecretIssued", "enrollment", enrollment, f"user:{user}",
         {**subject, "secret_id": secret, "replaced_secret_id": None}),
        ("TOTPEnrolled", "enrollment", enrollment, f"user:{user}",
         {**subject, "secret_id": secret, "time_step": step, "recovery_codes_issued": 10}),
    ]
    history += [("TOTPVerified", "enrollment", enrollment, f"user:{user}",
                 {**subject, "method": "totp", "time_step": step + k, "recovery_codes_left": 10,
                  "recovery_code_index": None}) for k in range(1, 5)]
    return history


def audit_records(m: int):
    """Yields M audit_log rows (seq, event_id, type, aggregate_id, principal_id, actor, occurred_at,
    envelope JSON, prev_hash, hash) forming a valid chain."""
    start = datetime.now(UTC) - timedelta(days=30)
    users = -(-m // EVENTS_PER_USER)
    seq, prev, moment = 0, audit_log.GENESIS, start
    versions: dict[str, int] = {}
    for block in range(0, users, BLOCK):
        histories = [user_history(start) for _ in range(min(BLOCK, users - block))]
        for k in range(EVENTS_PER_USER):
            for history in histories:
                if seq == m:
                    return
                kind, aggregate_type, aggregate_id, actor, payload = history[k]
                store = "scheduler" if aggregate_type == "deadline_timer" else aggregate_type
                version = versions[store + aggregate_id] = versions.get(store + aggregate_id, 0) + 1
                seq += 1
                moment += timedelta(milliseconds=5)
                event_id = str(uuid.uuid4())
                envelope = {"event_id": event_id, "type": kind, "schema_version": 1, "aggregate_type": aggregate_type,
                            "aggregate_id": aggregate_id, "aggregate_version": version, "occurred_at": _iso(moment),
                            "correlation_id": str(uuid.uuid4()), "causation_id": None, "command_id": str(uuid.uuid4()),
                            "actor": actor, "payload": payload}
                digest = audit_log.link_hash(seq, prev, envelope)
                principal = payload.get("principal_id") or payload.get("user_id")
                yield (seq, uuid.UUID(event_id), kind, aggregate_id, uuid.UUID(principal), actor, moment,
                       json.dumps(envelope), prev, digest)
                prev = digest
        if len(versions) > 100_000:
            versions.clear()  # aggregates of earlier blocks never come back


async def seed(conn: asyncpg.Connection, m: int) -> None:
    columns = ("seq", "event_id", "type", "aggregate_id", "principal_id", "actor", "occurred_at", "envelope",
               "prev_hash", "hash")
    batch = []
    for record in audit_records(m):
        batch.append(record)
        if len(batch) == COPY_BATCH:
            await conn.copy_records_to_table("audit_log", records=batch, columns=columns)
            batch = []
    if batch:
        await conn.copy_records_to_table("audit_log", records=batch, columns=columns)
    # The read models have applied every record: a replay applies only what they have (replay.py).
    await conn.execute("INSERT INTO projected_versions SELECT aggregate_id, max((envelope->>'aggregate_version')::int) "
                       "FROM audit_log GROUP BY aggregate_id")
    await conn.execute("ANALYZE audit_log; ANALYZE projected_versions")


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    m = args.events
    for record in audit_records(EVENTS_PER_USER * 2):  # every kind of record is a valid envelope
        Envelope.model_validate(json.loads(record[7])).body()
    async with bench.scratch_schema(SCHEMA, [GATEWAY_MIGRATIONS]) as schema:
        conn = await asyncpg.connect(bench.database_url, server_settings={"search_path": schema})
        try:
            started = time.monotonic()
            await seed(conn, m)
            log(f"replay: seeded {m:,} audit records in {time.monotonic() - started:.1f} s")
        finally:
            await conn.close()
        pool = await bench.pool(schema, size=2)
        try:
            raw_seconds = await read_with_cursor(pool)
            started = time.perf_counter()
            rebuilt = await replay.rebuild(pool)
            seconds = time.perf_counter() - started
            principals = await pool.fetchval(f"SELECT count(*) FROM {rebuilt.current['principals']}")
        finally:
            await pool.close()
    expected_users = -(-m // EVENTS_PER_USER)
    if rebuilt.position != m or principals != expected_users:
        raise RuntimeError(f"replay reached {rebuilt.position} with {principals} principals; expected {m}, "
                           f"{expected_users}")
    rate = m / seconds
    log(f"replay: {m:,} records in {seconds:.1f} s ({rate:,.0f}/s); cursor read {m / raw_seconds:,.0f}/s")
    return [Row(
        "3 projection rebuild", f"{m:,} audit records",
        Measure(rate, "events/s", detail=f"{seconds:.1f} s"),
        Measure(m / raw_seconds, "rows/s", label="asyncpg cursor read of the same rows"),
        target=f">= {TARGET_PER_SECOND:,} events/s", met=rate >= TARGET_PER_SECOND,
        notes={"events": m, "seconds": seconds, "raw_seconds": raw_seconds, "principals": principals},
    )]


async def read_with_cursor(pool: asyncpg.Pool) -> float:
    async with pool.acquire() as conn, conn.transaction():
        started = time.perf_counter()
        count = 0
        async for row in conn.cursor("SELECT seq, envelope FROM audit_log ORDER BY seq", prefetch=1000):
            count += row["seq"] > 0
        return time.perf_counter() - started
