"""`python -m mfaplane_gateway replay`: rebuilds the read models from the audit log into new table
versions while the current ones keep serving, then switches to them.

1. Create the next version of every read-model table (`LIKE` the current one: columns, indexes).
2. Apply the audit log to them in seq order, in batches committed one by one (each folded in memory
   into one upsert per changed row); the live projector keeps writing the current tables meanwhile.
3. Switch, in one transaction holding the read-models lock exclusively: every projection holds it,
   shared, from its start to its commit, so none is half done and none starts. Apply the records
   that arrived since, then point the registry at the new tables. The projector reads the registry
   after taking that lock, so every event lands in the new tables exactly once: through the replay
   (before the switch) or through the projector (after it).

The audit log and the read models are written by two consumer groups (projector.py), either of which
may be ahead, so a record is applied only once the read models have applied its event
(projected_versions): one they have not gets to the new tables through the projector. Such a record
waits, and its aggregate's later records behind it (`_Waiting`), until a later round finds it
projected, or the switch leaves it to the projector. The switch needs the converse too: the audit log
must hold every event the read models have applied (`awaiting_audit` empty), or one would be left out
of the new tables for good. It waits for that up to AUDIT_WAIT_SECONDS before taking the lock, up to
LOCKED_AUDIT_WAIT_SECONDS (the projector paused) after, and otherwise refuses (AuditBehind).

Seqs become visible in order (audit_log.py), so reading `seq > position` never skips a record that
commits late. The previous tables stay in step for SWITCH_GRACE (gateways refresh their cached table
names meanwhile) and are kept after that, for comparison or going back; the version before them is
dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from mfaplane_chassis.service import CliCommand
from mfaplane_contracts.registry import decode_payload
from mfaplane_eventing import db
from mfaplane_gateway.read_models import registry
from mfaplane_gateway.read_models.principals_projection import HANDLED_TYPES, Fold
from mfaplane_gateway.settings import GatewaySettings

BATCH = 10_000
# Audit records, each with whether the read models have applied its event: they apply an aggregate's
# events in version order, so up to the version they record.
_RECORDS = (
    "SELECT a.seq, a.type, a.aggregate_id, a.occurred_at, (a.envelope->>'schema_version')::int AS schema_version, "
    "a.envelope->'payload' AS payload, (a.envelope->>'aggregate_version')::int <= coalesce(p.version, 0) AS projected "
    "FROM audit_log a LEFT JOIN projected_versions p USING (aggregate_id) "
)
_WAITING = _RECORDS + "WHERE a.seq = ANY($1::bigint[]) ORDER BY a.seq"
_AFTER = _RECORDS + "WHERE a.seq > $1 ORDER BY a.seq LIMIT $2"
# Events the read models have applied that the audit log does not hold (rows for events it holds since
# are left over when the two consumers committed at once: deleted here).
_UNAUDITED = (
    "WITH audited AS (DELETE FROM awaiting_audit w USING audit_log a WHERE a.event_id = w.event_id) "
    "SELECT count(*) FROM awaiting_audit w WHERE NOT EXISTS (SELECT FROM audit_log a WHERE a.event_id = w.event_id) "
    "AND ($1::uuid[] IS NULL OR w.event_id = ANY($1))"
)
AUDIT_WAIT_SECONDS = 60.0
LOCKED_AUDIT_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05
SWITCH_GRACE = timedelta(seconds=10 * registry.REFRESH_SECONDS)
_VERSIONED = re.compile(r"^([a-z_]+)_v([0-9]+)$")


class ReplayRunning(Exception):
    pass


class AuditBehind(Exception):
    """The audit log lacks events the read models have applied: the switch would leave them out."""


@dataclass(frozen=True)
class Rebuilt:
    previous: dict[str, str]  # read model -> the table that served until the switch
    current: dict[str, str]  # read model -> the rebuilt table now serving
    position: int  # the last audit record read at the switch


class _Waiting:
    """The records read but not applied, per aggregate in seq order: each waits until the read models
    have applied its event, and for the earlier ones of its aggregate, so that an aggregate's events
    are applied in order."""

    def __init__(self) -> None:
        self._by_aggregate: dict[str, list[int]] = {}

    def seqs(self) -> list[int]:
        return [seq for queue in self._by_aggregate.values() for seq in queue]

    def take(self, record: asyncpg.Record) -> bool:
        """Whether to apply the record now (records come in seq order); if not, it waits."""
        aggregate, seq = record["aggregate_id"], record["seq"]
        queue = self._by_aggregate.setdefault(aggregate, [])
        if record["projected"] and queue[:1] in ([], [seq]):
            del queue[:1]
        elif seq not in queue:
            queue.append(seq)
        if not queue:
            del self._by_aggregate[aggregate]
        return seq not in queue


def version(table: str, step: int) -> str:
    match = _VERSIONED.match(table)
    if match is None:
        raise ValueError(f"{table!r} is not a versioned read-model table")
    return f"{match[1]}_v{int(match[2]) + step}"


async def rebuild(pool: asyncpg.Pool, batch: int = BATCH) -> Rebuilt:
    async with pool.acquire() as conn:
        # Session-level: held for the whole rebuild, so two replays never build the same version.
        if not await conn.try_session_lock("mfaplane-replay"):
            raise ReplayRunning("another replay is running")
        try:
            return await _rebuild(conn, batch)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('mfaplane-replay'))")


async def _copy_statistics_targets(conn: asyncpg.Connection, source: str, target: str) -> None:
    """`LIKE ... INCLUDING ALL` copies the indexes but not the columns' statistics targets (0006 raises
    the searched columns', so that the planner can tell a common pattern from a rare one)."""
    for column in await conn.fetch("SELECT attname, attstattarget FROM pg_attribute "
                                   "WHERE attrelid = $1::regclass AND attstattarget > 0", source):
        await conn.execute(f'ALTER TABLE {target} ALTER COLUMN "{column["attname"]}" '
                           f'SET STATISTICS {int(column["attstattarget"])}')


async def _rebuild(conn: asyncpg.Connection, batch: int) -> Rebuilt:
    previous = await registry.current(conn)
    targets = {name: version(table, 1) for name, table in previous.items()}
    for name, table in targets.items():
        # A leftover of an interrupted replay is never current: start it afresh.
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} (LIKE {previous[name]} INCLUDING ALL)")
        await _copy_statistics_targets(conn, previous[name], table)
    waiting = _Waiting()
    position = await _catch_up(conn, targets, 0, waiting, batch)
    # Under steady traffic the table is seldom empty: wait for what it holds now, then for the rest with
    # the projections paused, when nothing new comes in.
    await _wait_for_audit(conn, AUDIT_WAIT_SECONDS, await conn.fetchval("SELECT array_agg(event_id) FROM "
                                                                        "awaiting_audit") or [])
    async with conn.transaction():
        await registry.switching(conn)
        await _wait_for_audit(conn, LOCKED_AUDIT_WAIT_SECONDS)
        position = await _catch_up(conn, targets, position, waiting, batch)
        await conn.executemany(
            "UPDATE read_models SET previous_table = current_table, current_table = $2, "
            "previous_until = now() + $3::interval, switched_at = now() WHERE name = $1",
            [(name, table, SWITCH_GRACE) for name, table in targets.items()],
        )
    for table in previous.values():
        await conn.execute(f"DROP TABLE IF EXISTS {version(table, -1)}")
    return Rebuilt(previous, targets, position)


async def _catch_up(conn: asyncpg.Connection, tables: dict[str, str], position: int, waiting: _Waiting,
                    batch: int) -> int:
    """Applies the audit records after `position`, and those waiting, that the read models have applied, a
    batch per transaction, until none is left; returns the last record read."""
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_AFTER, position, batch)
            fold = Fold()
            for row in [*await conn.fetch(_WAITING, waiting.seqs()), *rows]:
                # Only the payloads a reducer reads are decoded; the audit log's columns give the rest.
                if waiting.take(row) and row["type"] in HANDLED_TYPES:
                    fold.add(row["occurred_at"], decode_payload(row["type"], row["schema_version"], row["payload"]))
            await fold.write(conn, tables)
        if len(rows) < batch:
            return rows[-1]["seq"] if rows else position
        position = rows[-1]["seq"]


async def _wait_for_audit(conn: asyncpg.Connection, seconds: float, only: list[uuid.UUID] | None = None) -> None:
    """Until the audit log holds every event the read models applied (or those of `only`)."""
    deadline = time.monotonic() + seconds
    while missing := await conn.fetchval(_UNAUDITED, only):
        if time.monotonic() > deadline:
            raise AuditBehind(f"{missing} event(s) the read models have applied are not in the audit log yet: is "
                              "the audit consumer (group mfaplane-gateway-audit) behind, or has it dead-lettered "
                              "them? See docs/operations.md, \"Replay a projection\".")
        await asyncio.sleep(POLL_SECONDS)


async def _run(settings: GatewaySettings, args: argparse.Namespace) -> None:
    pool = await db.create_pool(settings.database_url, settings.database_schema, max_size=1)
    try:
        rebuilt = await rebuild(pool, args.batch_size)
    except (ReplayRunning, AuditBehind) as refused:
        raise SystemExit(f"replay: {refused}") from None
    finally:
        await pool.close()
    for name, table in rebuilt.current.items():
        print(f"{name}: {rebuilt.previous[name]} -> {table}")
    print(f"rebuilt from audit records 1 to {rebuilt.position}")


COMMAND = CliCommand(
    help="rebuild the read models from the audit log into new tables, then switch to them",
    run=_run,
    arguments=((("--batch-size",), {"type": int, "default": BATCH, "help": "audit records per transaction"}),),
)
