"""The notifier's consumer handler: keeps recipients and enrollment state, queues notifications.

Sending happens in the mail loop, never here, so a slow or absent SMTP server cannot hold up
the Kafka poll loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_notifier.notifications import KIND_OF_EVENT, Enrollment, enrollment_after


RECIPIENT_EVENTS = (identity.UserCreated, identity.UserUpdated, identity.AdminCreated)
ENROLLMENT_EVENTS = (mfa.MFARequired, mfa.MFARequirementRemoved, mfa.EnrollmentExtended, mfa.MFAReset,
                     mfa.TOTPEnrolled)
HANDLES = (*RECIPIENT_EVENTS, identity.UserDeleted, *ENROLLMENT_EVENTS, *KIND_OF_EVENT)  # the consumer skips others


async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
    body = envelope.body()
    if isinstance(body, RECIPIENT_EVENTS):
        await _save_recipient(conn, body)
    elif isinstance(body, identity.UserDeleted):
        await conn.execute("UPDATE recipients SET deleted = true WHERE principal_id = $1", body.user_id)
    elif isinstance(body, ENROLLMENT_EVENTS):
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


@dataclass(frozen=True)
class MailFacts:
    """What the mail loop checks before sending: the recipient and the enrollment, as the notifier knows them."""

    email: str
    name: str
    kind: str
    deleted: bool
    enrollment: Enrollment | None
    deadline_seen: bool  # whether an mfa event has set the notification's deadline yet


# The facts of each claimed notification `n`, joined to the claim so that a batch needs no query per
# mail. The mail loop reads them again when they are over FACTS_FRESH_SECONDS old (a slow server).
FACTS = (
    "r.principal_id IS NOT NULL AS recipient_known, r.email, r.name, r.kind AS recipient_kind, r.deleted, "
    "e.enrollment_id IS NOT NULL AS enrolled, e.required, e.configured, e.deadline AS enrollment_deadline, "
    "coalesce(e.deadline = n.deadline OR n.deadline = ANY(e.seen_deadlines), false) AS deadline_seen "
    "FROM claimed n LEFT JOIN recipients r ON r.principal_id = n.principal_id "
    "LEFT JOIN enrollments e ON e.enrollment_id = n.enrollment_id AND r.principal_id IS NOT NULL"
)


def facts_of(row: asyncpg.Record) -> MailFacts | None:
    """The facts (see FACTS) of a claimed notification; None while its recipient is not known yet."""
    if not row["recipient_known"]:
        return None
    enrollment = Enrollment(row["required"], row["configured"], row["enrollment_deadline"]) if row["enrolled"] else None
    return MailFacts(row["email"], row["name"], row["recipient_kind"], row["deleted"], enrollment, row["deadline_seen"])


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
