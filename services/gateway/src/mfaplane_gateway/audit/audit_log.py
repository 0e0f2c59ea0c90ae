"""The auditors' append-only log of every event, with a hash chain for tamper evidence.

Record n's hash is SHA-256 over (n, the previous record's hash, the canonical JSON of the event).
Changing, removing or reordering any record changes every hash after it, so `verify` finds the
first broken link. Appends are serialised by a transaction-scoped advisory lock: the chain has
one head, and gateway replicas consuming different partitions must not both extend it.

The gateway appends in a consumer group of its own, mfaplane-gateway-audit (`handle_batch`), apart
from the projection of its read models (projector.py): a transaction holds the lock for the append
alone, and projections never wait for it. Seqs become visible in order, each appended and committed
under the lock, so a reader of `seq > n` never skips a record that commits late.

The chain runs in seq order, the order the gateway stored the records; topics are not ordered with
respect to each other, so that is not the order things happened in. Readers get the story order
instead (audit_order.py): by story_at, which the database sets at append from the event's
occurred_at, its aggregate's previous record and `stored_at` (migration 0011). story_at is beside
the chain, not in it: it arranges the chained records for reading, and a change to it can neither
hide, add nor change one (an export verifies in whatever order its lines come).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Gauge

from mfaplane_contracts.envelope import Envelope, canonical
from mfaplane_eventing import loops
from mfaplane_eventing.clock import Clock

GENESIS = "0" * 64
AUDIT_LAG = Gauge("mfaplane_audit_lag_seconds",
                  "Seconds from the newest event appended to the audit log's occurred_at to its append")
# Which of a run's events the log holds already, and its head (none: 0, GENESIS).
_HELD_AND_HEAD = (
    "SELECT ARRAY(SELECT event_id FROM audit_log WHERE event_id = ANY($1::uuid[])) AS held, "
    "coalesce((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0) AS seq, "
    "coalesce((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), $2) AS hash"
)


def link_hash(seq: int, prev_hash: str, envelope: dict[str, Any]) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{canonical(envelope)}".encode()).hexdigest()


# The newest version of each aggregate the log holds (whatever order a republished event arrives in).
_AUDITED = (
    "INSERT INTO audited_versions (aggregate_id, version) "
    "SELECT aggregate_id, max(version) FROM unnest($1::text[], $2::int[]) AS e(aggregate_id, version) "
    "GROUP BY aggregate_id ON CONFLICT (aggregate_id) "
    "DO UPDATE SET version = GREATEST(audited_versions.version, EXCLUDED.version)"
)


AWAITING_AUDIT = Gauge("mfaplane_audit_awaiting_oldest_seconds",
                       "Seconds since the read models applied the oldest event the audit log does not hold yet")
WATCH_SECONDS = 60.0


async def watch_awaiting(pool: asyncpg.Pool) -> None:
    """Keeps AWAITING_AUDIT current: normally the audit consumer catches up in seconds; an event left out of
    the log for long (its group skipped it, or parked it) shows here, and alerts."""
    async def measure() -> bool:
        oldest = await pool.fetchval("SELECT extract(epoch FROM now() - min(projected_at)) FROM awaiting_audit")
        AWAITING_AUDIT.set(float(oldest or 0.0))
        return False

    await loops.repeat("measuring what the audit log awaits", measure, WATCH_SECONDS)


async def handle_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope], clock: Clock) -> None:
    """The audit consumer's handler: appends a run of events, and tells a replay that the read models
    need no longer wait for them (`awaiting_audit`, replay.py)."""
    await append(conn, envelopes, clock.now())
    await conn.execute("DELETE FROM awaiting_audit WHERE event_id = ANY($1::uuid[])", [e.event_id for e in envelopes])
    await conn.execute(_AUDITED, [e.aggregate_id for e in envelopes], [e.aggregate_version for e in envelopes])
    AUDIT_LAG.set(max((clock.now() - envelopes[-1].occurred_at).total_seconds(), 0.0))


async def append(conn: asyncpg.Connection, envelopes: Sequence[Envelope], stored_at: datetime) -> None:
    """Extends the chain with those of `envelopes` it does not hold yet, in order, under the lock: one
    read and one insert. It may hold some: its consumer group starts where the read models' group is
    (consumer.py), in which the gateway appended until it had a group for the log.

    `stored_at` is the gateway's clock now: no event goes later in the story than when it was stored."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('mfaplane-audit-log'))")
    found = await conn.fetchrow(_HELD_AND_HEAD, [e.event_id for e in envelopes], GENESIS)
    held, seq, prev_hash = set(found["held"]), found["seq"], found["hash"]
    records = []
    for envelope in (e for e in envelopes if e.event_id not in held):
        seq, document, body = seq + 1, envelope.model_dump(mode="json"), envelope.body()
        principal = (getattr(body, "principal_id", None) or getattr(body, "user_id", None)
                     or getattr(body, "admin_id", None))
        digest = link_hash(seq, prev_hash, document)
        records.append((seq, envelope.event_id, envelope.type, envelope.aggregate_id, principal, envelope.actor,
                        envelope.occurred_at, stored_at, document, prev_hash, digest))
        prev_hash = digest
    await conn.executemany(
        "INSERT INTO audit_log (seq, event_id, type, aggregate_id, principal_id, actor, occurred_at, stored_at, "
        "envelope, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", records,
    )


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    reason: str


class Chain:
    """Checks records one at a time, in order, so a chain of any length is verified in constant memory."""

    def __init__(self) -> None:
        self.seq, self.head = 0, GENESIS

    def check(self, seq: int, prev_hash: str, digest: str, envelope: dict[str, Any]) -> BrokenLink | None:
        expected = self.seq + 1
        if seq != expected:
            return BrokenLink(expected, f"record {expected} is missing (found {seq})")
        if prev_hash != self.head:
            return BrokenLink(seq, "does not follow the previous record")
        if link_hash(seq, prev_hash, envelope) != digest:
            return BrokenLink(seq, "content does not match its hash")
        self.seq, self.head = seq, digest
        return None


async def stored_records(pool: asyncpg.Pool | asyncpg.Connection,
                         batch: int = 5000) -> AsyncIterator[tuple[int, str, str, dict]]:
    after = 0
    while rows := await pool.fetch(
        "SELECT seq, prev_hash, hash, envelope FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, batch
    ):
        for row in rows:
            yield row["seq"], row["prev_hash"], row["hash"], row["envelope"]
        after = rows[-1]["seq"]
