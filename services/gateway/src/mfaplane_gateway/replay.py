"""`python -m mfaplane_gateway replay`: rebuilds the read models from the audit log into new table
versions while the current ones keep serving, then switches to them.

1. Create the next version of every read-model table (`LIKE` the current one: columns, indexes).
2. Apply the audit log to them in seq order, in batches committed one by one (each folded in memory
   into one upsert per changed row); the live projector keeps writing the current tables meanwhile.
3. Switch, in one transaction holding the audit-log lock: every projector transaction holds it from
   its append to its commit, so none is half done and none starts. Apply the records that arrived
   since, then point the registry at the new tables. The projector reads the registry after taking
   that lock, so every event lands in the new tables exactly once: through the replay (seq up to
   the switch) or through the projector (after it).

Seqs become visible in order (each is appended and committed under that same lock), so reading
`seq > position` never skips a record that commits late. The previous tables stay in step for
SWITCH_GRACE (gateways refresh their cached table names meanwhile) and are kept after that, for
comparison or going back; the version before them is dropped.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from mfaplane_contracts.registry import decode_payload
from mfaplane_eventing import db
from mfaplane_eventing.service import CliCommand
from mfaplane_gateway import audit_log, read_models
from mfaplane_gateway.principals_projection import HANDLED_TYPES, Fold
from mfaplane_gateway.settings import GatewaySettings

BATCH = 10_000
_BATCH_QUERY = (
    "SELECT seq, type, occurred_at, (envelope->>'schema_version')::int AS schema_version, "
    "envelope->'payload' AS payload FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
)
SWITCH_GRACE = timedelta(seconds=10 * read_models.REFRESH_SECONDS)
_VERSIONED = re.compile(r"^([a-z_]+)_v([0-9]+)$")


class ReplayRunning(Exception):
    pass


@dataclass(frozen=True)
class Rebuilt:
    previous: dict[str, str]  # read model -> the table that served until the switch
    current: dict[str, str]  # read model -> the rebuilt table now serving
    position: int  # the audit record the rebuilt tables had reached at the switch


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
    previous = await read_models.current(conn)
    targets = {name: version(table, 1) for name, table in previous.items()}
    for name, table in targets.items():
        # A leftover of an interrupted replay is never current: start it afresh.
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} (LIKE {previous[name]} INCLUDING ALL)")
        await _copy_statistics_targets(conn, previous[name], table)
    position = await _catch_up(conn, targets, 0, batch)
    async with conn.transaction():
        await audit_log.lock(conn)
        position = await _catch_up(conn, targets, position, batch)
        await conn.executemany(
            "UPDATE read_models SET previous_table = current_table, current_table = $2, "
            "previous_until = now() + $3::interval, switched_at = now() WHERE name = $1",
            [(name, table, SWITCH_GRACE) for name, table in targets.items()],
        )
    for table in previous.values():
        await conn.execute(f"DROP TABLE IF EXISTS {version(table, -1)}")
    return Rebuilt(previous, targets, position)


async def _catch_up(conn: asyncpg.Connection, tables: dict[str, str], position: int, batch: int) -> int:
    """Applies the audit records after `position`, a batch per transaction, until none is left."""
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_BATCH_QUERY, position, batch)
            fold = Fold()
            for row in rows:
                # Only the payloads a reducer reads are decoded; the audit log's columns give the rest.
                if row["type"] in HANDLED_TYPES:
                    fold.add(row["occurred_at"], decode_payload(row["type"], row["schema_version"], row["payload"]))
            await fold.write(conn, tables)
        if len(rows) < batch:
            return rows[-1]["seq"] if rows else position
        position = rows[-1]["seq"]


async def _run(settings: GatewaySettings, args: argparse.Namespace) -> None:
    pool = await db.create_pool(settings.database_url, settings.database_schema, max_size=1)
    try:
        rebuilt = await rebuild(pool, args.batch_size)
    except ReplayRunning as running:
        raise SystemExit(f"replay: {running}") from None
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
