"""The order auditors read the audit log in, and how a reader resumes it with nothing skipped or repeated.

Story order: by story_at, then by seq. story_at (migration 0011) is when the event happened as the
log places it: its occurred_at, but never before its aggregate's previous record and never after
the gateway stored it. So one aggregate's records come in version order even when the clocks of
the services that emitted them disagree, and records of different aggregates (different topics,
which Kafka does not order with respect to each other) come in the order things happened. Records
placed at the same moment come in the order the gateway stored them (seq).

Settled segments. A read serves the chain in segments, seq ranges (start, end] chosen when the read
begins: every record in one is settled (its story_at at least AUDIT_SETTLE_SECONDS before the
gateway's clock, time enough for events in flight to arrive), and no record after it comes earlier
in story order. Each segment is served in story order, and each record carries a cursor naming its
segment and itself; a read from a cursor serves the rest of that segment, then the next one. So a
reader that resumes never misses nor repeats a record, and an export read from the start is the
chain from record 1 to the end of a segment, which verify-audit can check link by link.

An event that reaches the gateway more than AUDIT_SETTLE_SECONDS after it happened (a consumer far
behind) belongs before records already served. A reader that resumes gets it in the next segment,
after what it had; one that reads from the start again gets it in its place. Its story_at says
where it belongs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mfaplane_gateway.api import paging

MAX_SEQ = 2**63 - 1  # audit_log.seq is a PostgreSQL bigint
BATCH = 1000
FIRST_FILTER_PARAM = 6  # $1 to $5 are the segment, the position in it and the batch size
BEFORE_ALL = datetime.min.replace(tzinfo=UTC)
_LISTING = "audit/events"


@dataclass(frozen=True)
class Position:
    """Where a reader stands: it has every record up to seq `start` and, of the segment (start, end],
    those up to record `seq` in story order."""

    start: int
    end: int
    seq: int

    def cursor(self) -> str:
        return paging.pack(_LISTING, self.start, self.end, self.seq)

    @classmethod
    def of_cursor(cls, cursor: str) -> Position:
        """The position a cursor of this list names; anything else is refused before a query runs."""
        match paging.unpack(cursor, _LISTING):
            case [int(start), int(end), int(seq)] if 0 <= start < seq <= end <= MAX_SEQ:
                return cls(start, end, seq)
        raise paging.invalid_cursor()


@dataclass(frozen=True)
class Part:
    """The records of the segment (start, end] after `key` (story_at, seq) in story order."""

    start: int
    end: int
    key: tuple[datetime, int] = (BEFORE_ALL, 0)


async def plan(pool: asyncpg.Pool, horizon: datetime, cursor: Position | None = None, after: int = 0) -> list[Part]:
    """What a read serves of the log settled by `horizon`: from a cursor, the rest of its segment, then the
    next one; otherwise the segment from record 1, after record `after` in story order if given.

    `after` is how readers resumed before cursors: from the last record they had. It serves what a cursor
    would, except an event that reached the gateway after the reader had passed its place."""
    if cursor is not None:
        story_at = await _story_at(pool, cursor.seq)
        if story_at is None:
            raise paging.invalid_cursor()
        return [Part(cursor.start, cursor.end, (story_at, cursor.seq)),
                Part(cursor.end, await segment_end(pool, cursor.end, horizon))]
    if not after:
        return [Part(0, await segment_end(pool, 0, horizon))]
    story_at = await _story_at(pool, after)
    return [] if story_at is None else [Part(0, await segment_end(pool, 0, horizon), (story_at, after))]


async def _story_at(pool: asyncpg.Pool, seq: int) -> datetime | None:
    return await pool.fetchval("SELECT story_at FROM audit_log WHERE seq = $1", seq)


async def segment_end(pool: asyncpg.Pool, start: int, horizon: datetime) -> int:
    """The end of the segment after `start`: before the first record not settled by `horizon`, then back
    before any record that a record after the end precedes in story order (a few steps at most: the
    records around the end that crossed in flight).

    Each query is planned for its values: the ranges looked at are the newest records, and a plan made
    for any value would read the whole log."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        end = await conn.fetchval(
            "SELECT greatest($1::bigint, coalesce((SELECT min(seq) - 1 FROM audit_log WHERE seq > $1 "
            "AND story_at > $2), (SELECT max(seq) FROM audit_log)))", start, horizon)
        while end > start:
            floor = await conn.fetchval("SELECT min(story_at) FROM audit_log WHERE seq > $1", end)
            if floor is None:
                return end
            overtaken = await conn.fetchval(
                "SELECT min(seq) FROM audit_log WHERE seq > $1 AND seq <= $2 AND story_at > $3", start, end, floor)
            if overtaken is None:
                return end
            end = overtaken - 1
        return end


async def read(pool: asyncpg.Pool, parts: Sequence[Part], where: str, params: list[Any],
               limit: int | None) -> AsyncIterator[dict[str, Any]]:
    """The records of `parts` that match `where`, in story order, in keyset batches; at most `limit`."""
    left = limit
    for part in parts:
        key = part.key
        while part.end > part.start and left != 0:
            batch = BATCH if left is None else min(BATCH, left)
            rows = await pool.fetch(
                "SELECT seq, story_at, prev_hash, hash, envelope FROM audit_log WHERE seq > $1 AND seq <= $2 "
                f"AND (story_at, seq) > ($3, $4) AND {where} ORDER BY story_at, seq LIMIT $5",
                part.start, part.end, *key, batch, *params,
            )
            for row in rows:
                yield {**dict(row), "story_at": row["story_at"].isoformat(),
                       "cursor": Position(part.start, part.end, row["seq"]).cursor()}
            left = None if left is None else left - len(rows)
            if len(rows) < batch:
                break
            key = rows[-1]["story_at"], rows[-1]["seq"]
