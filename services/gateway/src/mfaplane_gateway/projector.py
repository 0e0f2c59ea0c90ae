"""The gateway's consumer handler: every event goes to the audit log and through the reducers."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.identity_events import UserDeleted, UserPasswordChanged
from mfaplane_contracts.mfa_events import MFAReset
from mfaplane_eventing.clock import Clock
from mfaplane_gateway import audit_log, read_models
from mfaplane_gateway.sessions import end_sessions_before
from mfaplane_gateway.principals_projection import Fold

PROJECTION_LAG = Gauge("mfaplane_projection_lag_seconds",
                       "Seconds from the newest projected event's occurred_at to its projection")
# Events after which a principal's earlier sessions must end.
ENDS_SESSIONS = (MFAReset, UserPasswordChanged, UserDeleted)


async def project(conn: asyncpg.Connection, envelope: Envelope, tables: dict[str, str]) -> None:
    """Applies the event to the read-model tables `tables` (the live ones, or a version being rebuilt)."""
    fold = Fold()
    fold.add(envelope.occurred_at, envelope.body())
    await fold.write(conn, tables)


async def handle(conn: asyncpg.Connection, envelope: Envelope, clock: Clock) -> None:
    # append() takes the audit-log lock, which a replay's switch takes too: the registry read after
    # it names the tables in force for this event.
    await audit_log.append(conn, envelope)
    for tables in await read_models.write_targets(conn):
        await project(conn, envelope, tables)
    await conn.execute(
        "INSERT INTO projected_versions (aggregate_id, version) VALUES ($1, $2) ON CONFLICT (aggregate_id) "
        "DO UPDATE SET version = GREATEST(projected_versions.version, EXCLUDED.version)",
        envelope.aggregate_id, envelope.aggregate_version,
    )
    body = envelope.body()
    if isinstance(body, ENDS_SESSIONS):
        principal = body.principal_id if isinstance(body, MFAReset) else body.user_id
        await end_sessions_before(conn, principal, envelope.occurred_at)
    PROJECTION_LAG.set(max((clock.now() - envelope.occurred_at).total_seconds(), 0.0))
