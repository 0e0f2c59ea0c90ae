"""Which table serves each read model: the `read_models` registry, and this process's copy of it.

Read models live in versioned tables (principals_v1, principals_v2...) so that `replay` can build
the next version while the current one serves, then switch the registry. Two kinds of readers:

- the projector reads the registry in every transaction, after taking the read-models lock shared
  (`projecting`: projections run side by side, on any number of replicas), which a switch takes
  exclusively (`switching`), so each event is applied to exactly the tables in force at its turn;
- queries use LIVE_TABLES, refreshed every REFRESH_SECONDS off the request path: a lookup per
  request would cost a round trip for a name that changes once in months. A query may still use
  the previous table for that long after a switch, which is why the projector keeps the previous
  table up to date for a grace period longer than that (see `write_targets`).
"""

from __future__ import annotations

import asyncpg

from mfaplane_eventing import loops

REFRESH_SECONDS = 1.0
# Until the first refresh (the gateway refreshes before it serves); the first versions.
LIVE_TABLES: dict[str, str] = {"principals": "principals_v1", "resources": "resources_v1"}


async def projecting(conn: asyncpg.Connection) -> None:
    """Until the transaction ends, no switch can start (a projection is never half in the old tables)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext('mfaplane-read-models'))")


async def switching(conn: asyncpg.Connection) -> None:
    """Until the transaction ends, no projection runs: waits for those running, holds back the next."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('mfaplane-read-models'))")


async def current(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, str]:
    return {r["name"]: r["current_table"] for r in await conn.fetch("SELECT name, current_table FROM read_models")}


async def write_targets(conn: asyncpg.Connection) -> list[dict[str, str]]:
    """The table sets an event is projected into: the current ones, plus the previous ones in a switch's grace."""
    rows = await conn.fetch(
        "SELECT name, current_table, previous_table, previous_until > now() AS in_grace FROM read_models"
    )
    targets = [{r["name"]: r["current_table"] for r in rows}]
    # `replay` switches every read model at once, so the previous set is complete or absent.
    if rows and all(r["in_grace"] for r in rows):
        targets.append({r["name"]: r["previous_table"] for r in rows})
    return targets


async def refresh(pool: asyncpg.Pool) -> None:
    LIVE_TABLES.update(await current(pool))


async def keep_current(pool: asyncpg.Pool) -> None:
    async def step() -> bool:
        await refresh(pool)
        return False  # nothing more to do until the next refresh

    await loops.repeat("refreshing the read-model registry", step, REFRESH_SECONDS)
