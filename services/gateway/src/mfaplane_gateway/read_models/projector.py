"""The gateway's projection: every event through the reducers into the read models, in the gateway's own
consumer group (mfaplane-gateway).

The audit log is appended by a consumer group of its own (audit_log.handle_batch), so a projection
never waits for the chain's one head: projections run side by side, on as many replicas as the topics
have partitions, holding only the read-models lock, shared (registry.projecting). Either consumer
may be ahead: a projected event the log does not have yet is noted in `awaiting_audit` for a replay's
switch, and consistency tokens wait for both (recorded_versions, read_your_writes.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from prometheus_client import Gauge

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.identity_events import (
    AdminDeleted,
    AdminPasswordChanged,
    AdminSessionsEnded,
    UserDeleted,
    UserPasswordChanged,
    UserSessionsEnded,
)
from mfaplane_contracts.mfa_events import MFARequired, MFAReset
from mfaplane_contracts.subjects import principal_of
from mfaplane_eventing.clock import Clock
from mfaplane_gateway.edge.sessions import end_sessions_before
from mfaplane_gateway.read_models import registry
from mfaplane_gateway.read_models.principals_projection import Fold

PROJECTION_LAG = Gauge("mfaplane_projection_lag_seconds",
                       "Seconds from the newest projected event's occurred_at to its projection")
# Events after which a principal's earlier sessions must end.
ENDS_SESSIONS = (MFAReset, MFARequired, UserPasswordChanged, AdminPasswordChanged, UserDeleted, AdminDeleted,
                 UserSessionsEnded, AdminSessionsEnded)
_PROJECTED = (
    "INSERT INTO projected_versions (aggregate_id, version) "
    "SELECT aggregate_id, max(version) FROM unnest($1::text[], $2::int[]) AS e(aggregate_id, version) "
    "GROUP BY aggregate_id ON CONFLICT (aggregate_id) "
    "DO UPDATE SET version = GREATEST(projected_versions.version, EXCLUDED.version)"
)
_AWAITING_AUDIT = ("INSERT INTO awaiting_audit (event_id) SELECT e FROM unnest($1::uuid[]) AS e "
                   "WHERE NOT EXISTS (SELECT FROM audit_log WHERE event_id = e)")


def _cutoffs(envelopes: Sequence[Envelope]) -> dict[uuid.UUID, datetime]:
    """Each principal's latest moment after which its earlier sessions and challenges end."""
    cutoffs: dict[uuid.UUID, datetime] = {}
    for envelope in envelopes:
        body = envelope.body()
        if isinstance(body, ENDS_SESSIONS):
            principal = principal_of(body)
            cutoffs[principal] = max(cutoffs.get(principal, envelope.occurred_at), envelope.occurred_at)
    return cutoffs


async def handle_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope], clock: Clock) -> None:
    """Projects a run of events, in order, with a few statements for all of them."""
    # The lock a replay's switch takes exclusively: the registry read after it names the tables in
    # force for these events.
    await registry.projecting(conn)
    fold = Fold()
    for envelope in envelopes:
        fold.add(envelope.occurred_at, envelope.body())
    for tables in await registry.write_targets(conn):
        await fold.write(conn, tables)
    await conn.execute(_PROJECTED, [e.aggregate_id for e in envelopes], [e.aggregate_version for e in envelopes])
    await conn.execute(_AWAITING_AUDIT, [e.event_id for e in envelopes])
    if cutoffs := _cutoffs(envelopes):
        await end_sessions_before(conn, cutoffs)
    PROJECTION_LAG.set(max((clock.now() - envelopes[-1].occurred_at).total_seconds(), 0.0))
