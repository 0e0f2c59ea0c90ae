"""The notifier's consumer handler: keeps recipients and enrollment state, queues notifications.

Sending happens in the mail loop, never here, so a slow or absent SMTP server cannot hold up
the Kafka poll loop.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_notifier.notifications import KIND_OF_EVENT, Enrollment, enrollment_after


async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
    body = envelope.body()
    match body:
        case identity.UserCreated() | identity.UserUpdated() | identity.AdminCreated():
            await _save_recipient(conn, body)
        case identity.UserDeleted(user_id=user_id):
            await conn.execute("UPDATE recipients SET deleted = true WHERE principal_id = $1", user_id)
        case mfa.MFARequired() | mfa.MFARequirementRemoved() | mfa.EnrollmentExtended() | mfa.MFAReset() \
                | mfa.TOTPEnrolled():
            await _save_enrollment(conn, envelope.aggregate_id, body)
    kind = KIND_OF_EVENT.get(type(body))
    if kind is not None:
        await conn.execute(
            "INSERT INTO notifications (event_id, kind, principal_id, enrollment_id, deadline, next_attempt_at, "
            "created_at) VALUES ($1, $2, $3, $4, $5, now(), $6) ON CONFLICT DO NOTHING",
            envelope.event_id, kind, body.principal_id, mfa.enrollment_id(body.scope, body.principal_id),
            getattr(body, "deadline", None), envelope.occurred_at,
        )


async def _save_recipient(conn: asyncpg.Connection, body: EventPayload) -> None:
    kind = "admin" if isinstance(body, identity.AdminCreated) else "user"
    principal = body.admin_id if kind == "admin" else body.user_id
    await conn.execute(
        "INSERT INTO recipients (principal_id, kind, email, name) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (principal_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name",
        principal, kind, body.email, body.name,
    )


async def load_enrollment(conn: asyncpg.Connection, enrollment_id: str) -> Enrollment | None:
    row = await conn.fetchrow("SELECT required, configured, deadline FROM enrollments WHERE enrollment_id = $1",
                              enrollment_id)
    return Enrollment(row["required"], row["configured"], row["deadline"]) if row else None


async def deadline_seen(conn: asyncpg.Connection | asyncpg.Pool, enrollment_id: str, deadline: datetime) -> bool:
    """Whether an mfa event has set this deadline yet (a reminder or expiry can overtake that event)."""
    return bool(await conn.fetchval(
        "SELECT deadline = $2 OR $2 = ANY(seen_deadlines) FROM enrollments WHERE enrollment_id = $1",
        enrollment_id, deadline,
    ))


async def _save_enrollment(conn: asyncpg.Connection, enrollment_id: str, body: EventPayload) -> None:
    after = enrollment_after(body, await load_enrollment(conn, enrollment_id))
    await conn.execute(
        "INSERT INTO enrollments (enrollment_id, required, configured, deadline, seen_deadlines) "
        "VALUES ($1, $2, $3, $4, array_remove(ARRAY[$4::timestamptz], NULL)) "
        "ON CONFLICT (enrollment_id) DO UPDATE SET required = EXCLUDED.required, configured = EXCLUDED.configured, "
        "deadline = EXCLUDED.deadline, seen_deadlines = CASE WHEN EXCLUDED.deadline = ANY(enrollments.seen_deadlines) "
        "THEN enrollments.seen_deadlines ELSE enrollments.seen_deadlines || EXCLUDED.seen_deadlines END",
        enrollment_id, after.required, after.configured, after.deadline,
    )
