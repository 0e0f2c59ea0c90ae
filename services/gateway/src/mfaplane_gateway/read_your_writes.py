"""Read-your-writes: a command's receipt names the aggregate version it produced; a query that
passes that token back waits (bounded) until the projections have applied that version."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from mfaplane_eventing.aggregate import Rejected

POLL_SECONDS = 0.02


def token(aggregate_id: str, version: int) -> str:
    return f"{aggregate_id}@{version}"


def parse(consistency_token: str) -> tuple[str, int]:
    aggregate_id, _, version = consistency_token.rpartition("@")
    if not aggregate_id or not version.isdigit():
        raise Rejected("invalid_consistency_token", "The consistency token is not one this API returned.", 400)
    return aggregate_id, int(version)


async def wait_for(pool: asyncpg.Pool, consistency_tokens: list[str] | None, timeout: float) -> None:
    """Returns once every token's aggregate version is projected (each token names one aggregate)."""
    deadline = time.monotonic() + timeout
    for consistency_token in consistency_tokens or ():
        await _wait_for_one(pool, parse(consistency_token), deadline)


async def _wait_for_one(pool: asyncpg.Pool, wanted: tuple[str, int], deadline: float) -> None:
    aggregate_id, version = wanted
    while (await pool.fetchval("SELECT version FROM projected_versions WHERE aggregate_id = $1", aggregate_id) or 0) < version:
        if time.monotonic() > deadline:
            raise Rejected("projection_behind", "The change is not visible yet; retry shortly.", 503,
                           retry_after_seconds=1)
        await asyncio.sleep(POLL_SECONDS)
