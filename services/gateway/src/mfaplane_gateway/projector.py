"""The gateway's consumer handler: every event goes to the audit log and through the reducers."""

from __future__ import annotations

import asyncpg

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.identity_events import UserDeleted, UserPasswordChanged
from mfaplane_contracts.mfa_events import MFAReset
from mfaplane_gateway import audit_log
from mfaplane_gateway.sessions import end_sessions_before
from mfaplane_gateway.principals_projection import REDUCERS

LIVE_TABLES = {"principals": "principals_v1", "resources": "resources_v1"}


async def project(conn: asyncpg.Connection, envelope: Envelope, tables: dict[str, str] = LIVE_TABLES) -> None:
    body = envelope.body()
    reducer = REDUCERS.get(type(body))
    if reducer is not None:
        await reducer(conn, tables, envelope, body)
    await conn.execute(
        "INSERT INTO projected_versions (aggregate_id, version) VALUES ($1, $2) ON CONFLICT (aggregate_id) "
        "DO UPDATE SET version = GREATEST(projected_versions.version, EXCLUDED.version)",
        envelope.aggregate_id, envelope.aggregate_version,
    )


# Events after which a principal's earlier sessions must end.
ENDS_SESSIONS = (MFAReset, UserPasswordChanged, UserDeleted)


async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
    await audit_log.append(conn, envelope)
    await project(conn, envelope)
    body = envelope.body()
    if isinstance(body, ENDS_SESSIONS):
        principal = body.principal_id if isinstance(body, MFAReset) else body.user_id
        await end_sessions_before(conn, principal, envelope.occurred_at)
