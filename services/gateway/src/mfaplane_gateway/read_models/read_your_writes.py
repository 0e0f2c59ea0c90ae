"""Read-your-writes: a command's answer carries a consistency token; a query that passes it back waits
(bounded) until the projections have applied what the command did, and the audit log holds it: the two
are written by consumer groups of their own (projector.py), and a client that reads the audit history
after the read models finds its change there too. Both are read through the view recorded_versions
(migration 0015).

Two kinds of token:
- `<aggregate_id>@<version>`, on a receipt: the one aggregate the command went to, at that version.
  The gateway cannot tell a version still on its way from one that never was, so it waits for either.
- `bulk:<id>`, on a bulk result: every change the bulk made, however many, so the token stays short
  enough for a query string. A bulk operation on users keeps the version each item reached with the
  item (bulk.py), and is applied after its answer: its token first waits for the operation to finish
  (503 `operation_running` when it will not within the wait). A bulk switch of systems keeps its
  changes in consistency_sets for KEPT_FOR. The bulk is recorded before its answer, so a `bulk:` id the
  gateway does not know is one kept no longer (or never issued): its token waits for nothing.
Once a bulk's changes have all been found projected, the bulk is marked settled, and checking its
token again reads one row.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

from mfaplane_chassis.service import Runtime
from mfaplane_contracts.mfa_events import Scope
from mfaplane_eventing import loops
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge import sessions

POLL_SECONDS = 0.02
BULK = "bulk:"
VERSION = re.compile(r"[0-9]{1,10}")
MAX_VERSION = 2**31 - 1  # versions are PostgreSQL integers
KEPT_FOR = timedelta(days=1)  # a bulk switch of systems' changes; its token waits for nothing after that
# The bulk worker's pace (docs/performance.md, bulk require), with room for a loaded machine: what a
# still running operation's Retry-After is worked out from.
BULK_ITEMS_PER_SECOND = 2000
# What a bulk operation on users changes: each user's enrollment in this scope (bulk.py sends its commands
# in it), the aggregate `user_portal:<user id>` (mfaplane_contracts.mfa_events.enrollment_id).
USER_BULK_SCOPE: Scope = "user_portal"

_VERSIONS_BEHIND = (
    "SELECT EXISTS (SELECT FROM unnest($1::text[], $2::int[]) AS wanted (aggregate_id, version) "
    "               LEFT JOIN recorded_versions p USING (aggregate_id) "
    "               WHERE coalesce(p.version, 0) < wanted.version)"
)
_BULK = (
    "SELECT true AS of_users, settled_at FROM bulk_operations WHERE operation_id = $1 "
    "UNION ALL SELECT false, settled_at FROM consistency_sets WHERE set_id = $1"
)
# Pending items first: a running operation is not checked against the projections.
_RUNNING = (
    "SELECT count(*) AS pending, extract(epoch FROM max(claimed_until) FILTER (WHERE reason IS NOT NULL) - now()) "
    "AS retried_in FROM bulk_operation_items WHERE operation_id = $1 AND state = 'pending'"
)
_SETTLE_USERS = (
    "UPDATE bulk_operations SET settled_at = now() WHERE operation_id = $1 AND settled_at IS NULL "
    "AND NOT EXISTS (SELECT FROM bulk_operation_items WHERE operation_id = $1 AND state = 'pending') "
    "AND NOT EXISTS (SELECT FROM bulk_operation_items i "
    "                LEFT JOIN recorded_versions p ON p.aggregate_id = $2::text || ':' || i.user_id "
    "                WHERE i.operation_id = $1 AND coalesce(p.version, 0) < i.version) RETURNING true"
)
_SETTLE_SET = (
    "UPDATE consistency_sets SET settled_at = now() WHERE set_id = $1 AND settled_at IS NULL "
    "AND NOT EXISTS (SELECT FROM consistency_set_changes c LEFT JOIN recorded_versions p USING (aggregate_id) "
    "                WHERE c.set_id = $1 AND coalesce(p.version, 0) < c.version) RETURNING true"
)


def token(aggregate_id: str, version: int) -> str:
    return f"{aggregate_id}@{version}"


def bulk_token(bulk_id: uuid.UUID) -> str:
    return f"{BULK}{bulk_id}"


async def record_set(pool: asyncpg.Pool, set_id: uuid.UUID, now: datetime,
                     changes: Sequence[tuple[str, int]]) -> None:
    """Records what a bulk switch of systems changed (aggregate id, version reached) under its token's id."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO consistency_sets (set_id, created_at) VALUES ($1, $2)", set_id, now)
        await conn.execute(
            "INSERT INTO consistency_set_changes (set_id, aggregate_id, version) "
            "SELECT $1, a, v FROM unnest($2::text[], $3::int[]) AS c(a, v)",
            set_id, [aggregate_id for aggregate_id, _ in changes], [version for _, version in changes],
        )


async def delete_expired_sets(pool: asyncpg.Pool, now: datetime, batch: int = sessions.SWEEP_BATCH) -> bool:
    """Deletes up to `batch` sets older than KEPT_FOR (their changes with them); True if there may be more."""
    return await sessions.delete_older(pool, "consistency_sets", "set_id", "created_at", now - KEPT_FOR, batch) == batch


async def sweep_expired_sets(runtime: Runtime) -> None:
    await loops.repeat("deleting expired consistency sets",
                       lambda: delete_expired_sets(runtime.pool, runtime.clock.now()), sessions.SWEEP_SECONDS)


class _Wanted(NamedTuple):
    versions: dict[str, int]  # per aggregate, the highest version a token names
    bulks: list[uuid.UUID]


def _wanted(consistency_tokens: Iterable[str]) -> _Wanted:
    """What the tokens wait for, each thing once; a token this API did not return is refused (400)."""
    versions: dict[str, int] = {}
    bulks: dict[uuid.UUID, None] = {}
    for consistency_token in consistency_tokens:
        if consistency_token.startswith(BULK):
            try:
                bulks[uuid.UUID(consistency_token.removeprefix(BULK))] = None
            except ValueError:
                raise _invalid() from None
            continue
        aggregate_id, _, version = consistency_token.rpartition("@")
        if not aggregate_id or not VERSION.fullmatch(version) or int(version) > MAX_VERSION:
            raise _invalid()
        versions[aggregate_id] = max(int(version), versions.get(aggregate_id, 0))
    return _Wanted(versions, list(bulks))


def _invalid() -> Rejected:
    return Rejected("invalid_consistency_token", "The consistency token is not one this API returned.", Refusal.INVALID)


class _NotYet(NamedTuple):
    """Why a token's changes cannot be read yet: the answer if the wait ends now, and how many seconds
    more it is expected to take (0: unknown, worth waiting for)."""

    refusal: Rejected
    expected_seconds: float = 0


Check = Callable[[], Awaitable[_NotYet | None]]


async def wait_for(pool: asyncpg.Pool, consistency_tokens: list[str] | None, timeout: float) -> None:
    """Returns once every token's changes are projected; refuses (503) when they are not within `timeout`
    seconds, at once when they are expected to take longer."""
    wanted = _wanted(consistency_tokens or ())
    checks: list[Check] = [functools.partial(_bulk_not_yet, pool, bulk_id) for bulk_id in wanted.bulks]
    if wanted.versions:
        checks.insert(0, functools.partial(_versions_not_yet, pool, wanted.versions))
    deadline = time.monotonic() + timeout
    for check in checks:
        while (not_yet := await check()) is not None:
            if time.monotonic() + not_yet.expected_seconds > deadline:
                raise not_yet.refusal
            await asyncio.sleep(POLL_SECONDS)


async def _versions_not_yet(pool: asyncpg.Pool, versions: dict[str, int]) -> _NotYet | None:
    behind = await pool.fetchval(_VERSIONS_BEHIND, list(versions), list(versions.values()))
    return _NotYet(_projection_behind()) if behind else None


async def _bulk_not_yet(pool: asyncpg.Pool, bulk_id: uuid.UUID) -> _NotYet | None:
    bulk = await pool.fetchrow(_BULK, bulk_id)
    if bulk is None or bulk["settled_at"] is not None:
        return None  # settled, or unknown: kept no longer, or never issued
    if bulk["of_users"]:
        running = await pool.fetchrow(_RUNNING, bulk_id)
        if running["pending"]:
            expected = max(running["pending"] / BULK_ITEMS_PER_SECOND, float(running["retried_in"] or 0))
            return _NotYet(_operation_running(bulk_id, max(math.ceil(expected), 1)), expected)
        settled = await pool.fetchval(_SETTLE_USERS, bulk_id, USER_BULK_SCOPE)
    else:
        settled = await pool.fetchval(_SETTLE_SET, bulk_id)
    return None if settled else _NotYet(_projection_behind())


def _projection_behind() -> Rejected:
    return Rejected("projection_behind", "The change is not visible yet; retry shortly.", Refusal.NOT_READY,
                    retry_after=1, retry_after_seconds=1)  # the second name is deprecated (README)


def _operation_running(operation_id: uuid.UUID, seconds: int) -> Rejected:
    return Rejected("operation_running", f"The bulk operation is still being applied; retry later, or follow it at "
                                         f"/v1/bulk-operations/{operation_id}.", Refusal.NOT_READY, retry_after=seconds)
