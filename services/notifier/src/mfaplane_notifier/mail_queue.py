"""The notifier's consumer handler: keeps recipients and enrollment state, queues notifications.

Sending happens in the mail loop, never here, so a slow or absent SMTP server cannot hold up
the Kafka poll loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.enrollment_summary import SETS, EnrollmentSummary
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_contracts.subjects import principal_of
from mfaplane_notifier.notifications import KIND_OF_EVENT, kind_of

RECIPIENT_EVENTS = (identity.UserCreated, identity.UserUpdated, identity.AdminCreated)
ENROLLMENT_EVENTS = tuple(SETS)
DELETIONS = (identity.UserDeleted, identity.AdminDeleted)
# the consumer skips others
HANDLES: tuple[type[EventPayload], ...] = (*RECIPIENT_EVENTS, *DELETIONS, *ENROLLMENT_EVENTS, *KIND_OF_EVENT)


async def handle_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """Handles a run of events in order, with a statement per table rather than per event."""
    bodies = [(envelope, envelope.body()) for envelope in envelopes]
    await _save_recipients(conn, [body for _, body in bodies if isinstance(body, RECIPIENT_EVENTS)])
    if deleted := [principal_of(body) for _, body in bodies if isinstance(body, DELETIONS)]:
        await conn.execute("UPDATE recipients SET deleted = true WHERE principal_id = ANY($1::uuid[])", deleted)
    await _save_enrollments(conn, [(e.aggregate_id, e.aggregate_version, body) for e, body in bodies
                                   if isinstance(body, ENROLLMENT_EVENTS)])
    await _queue_notifications(conn, [(e, body) for e, body in bodies if kind_of(body) is not None])


def _enrollment(body: EventPayload) -> str | None:
    """The enrollment an mfa event is about; None for an identity event (a password reset)."""
    scope = getattr(body, "scope", None)
    return mfa.enrollment_id(scope, principal_of(body)) if scope is not None else None


def _deadline(body: EventPayload) -> datetime | None:
    """The deadline a mail tells and is checked against: a period's end, or when a reset link expires."""
    return getattr(body, "expires_at", None) or getattr(body, "deadline", None)


async def _save_recipients(conn: asyncpg.Connection,
                           bodies: list[identity.UserCreated | identity.UserUpdated | identity.AdminCreated]) -> None:
    """Each principal's last name and address. Deletions are applied after: no event follows one."""
    latest = {}
    for body in bodies:
        kind = "admin" if isinstance(body, identity.AdminCreated) else "user"
        latest[principal_of(body)] = (kind, body.email, body.name)
    if not latest:
        return
    kinds, emails, names = zip(*latest.values(), strict=True)
    await conn.execute(
        "INSERT INTO recipients (principal_id, kind, email, name) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) "
        "ON CONFLICT (principal_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name",
        list(latest), kinds, emails, names,
    )


async def _save_enrollments(conn: asyncpg.Connection, changes: list[tuple[str, int, EventPayload]]) -> None:
    """Each enrollment's state and version after its events, and every deadline they set on the way:
    a mail for any of those may still be queued (see MailFacts.deadline_seen)."""
    if not changes:
        return
    ids = list(dict.fromkeys(enrollment_id for enrollment_id, _, _ in changes))
    rows = await conn.fetch("SELECT enrollment_id, required, configured, deadline FROM enrollments "
                            "WHERE enrollment_id = ANY($1::text[])", ids)
    state = {r["enrollment_id"]: EnrollmentSummary(r["required"], r["configured"], r["deadline"]) for r in rows}
    version: dict[str, int] = {}
    seen: list[tuple[str, datetime]] = []
    for enrollment_id, at, body in changes:
        after = state.get(enrollment_id, EnrollmentSummary()).after(body)
        state[enrollment_id], version[enrollment_id] = after, max(at, version.get(enrollment_id, at))
        if after.deadline is not None:
            seen.append((enrollment_id, after.deadline))
    await conn.execute(
        "WITH seen AS (SELECT enrollment_id, array_agg(DISTINCT deadline) AS deadlines "
        "              FROM unnest($5::text[], $6::timestamptz[]) AS s(enrollment_id, deadline) GROUP BY 1) "
        "INSERT INTO enrollments (enrollment_id, required, configured, deadline, version, seen_deadlines) "
        "SELECT n.enrollment_id, n.required, n.configured, n.deadline, n.version, coalesce(seen.deadlines, '{}') "
        "FROM unnest($1::text[], $2::bool[], $3::bool[], $4::timestamptz[], $7::int[]) "
        "     AS n(enrollment_id, required, configured, deadline, version) LEFT JOIN seen USING (enrollment_id) "
        "ON CONFLICT (enrollment_id) DO UPDATE SET required = EXCLUDED.required, configured = EXCLUDED.configured, "
        "deadline = EXCLUDED.deadline, version = greatest(enrollments.version, EXCLUDED.version), "
        "seen_deadlines = enrollments.seen_deadlines || ARRAY("
        "  SELECT unnest(EXCLUDED.seen_deadlines) EXCEPT SELECT unnest(enrollments.seen_deadlines))",
        ids, [state[e].required for e in ids], [state[e].set_up for e in ids], [state[e].deadline for e in ids],
        [e for e, _ in seen], [deadline for _, deadline in seen], [version[e] for e in ids],
    )


async def _queue_notifications(conn: asyncpg.Connection, events: list[tuple[Envelope, EventPayload]]) -> None:
    """One notification per event, keyed by its id: a redelivered event queues nothing more."""
    if not events:
        return
    await conn.execute(
        "INSERT INTO notifications (event_id, kind, principal_id, enrollment_id, deadline, paused_until, "
        "recovery_codes_left, reset_id, enrollment_version, next_attempt_at, created_at) "
        "SELECT event_id, kind, principal_id, enrollment_id, deadline, paused_until, recovery_codes_left, reset_id, "
        "enrollment_version, now(), created_at FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], "
        "$5::timestamptz[], $6::timestamptz[], $7::int[], $8::uuid[], $9::timestamptz[], $10::int[]) "
        "AS n(event_id, kind, principal_id, enrollment_id, deadline, paused_until, recovery_codes_left, reset_id, "
        "created_at, enrollment_version) ON CONFLICT DO NOTHING",
        [e.event_id for e, _ in events], [kind_of(body) for _, body in events],
        [principal_of(body) for _, body in events], [_enrollment(body) for _, body in events],
        [_deadline(body) for _, body in events], [getattr(body, "until", None) for _, body in events],
        [getattr(body, "recovery_codes_left", None) for _, body in events],
        [getattr(body, "reset_id", None) for _, body in events], [e.occurred_at for e, _ in events],
        [getattr(body, "enrollment_version", None) for _, body in events],
    )


@dataclass(frozen=True)
class MailFacts:
    """What the mail loop checks before sending: the recipient and the enrollment, as the notifier knows them."""

    email: str
    name: str
    kind: str
    deleted: bool
    enrollment: EnrollmentSummary | None
    deadline_seen: bool  # whether the mfa event that set the notification's deadline has been seen


# The facts of each claimed notification `n`, joined to the claim so that a batch needs no query per
# mail. The mail loop reads them again when they are over FACTS_FRESH_SECONDS old (a slow server).
FACTS = (
    "r.principal_id IS NOT NULL AS recipient_known, r.email, r.name, r.kind AS recipient_kind, r.deleted, "
    "e.enrollment_id IS NOT NULL AS enrolled, e.required, e.configured, e.deadline AS enrollment_deadline, "
    # A timer's mail (v2) names the enrollment version that set its deadline; older ones only the deadline.
    "coalesce(CASE WHEN n.enrollment_version IS NOT NULL AND e.version IS NOT NULL "
    "              THEN e.version >= n.enrollment_version "
    "              ELSE e.deadline = n.deadline OR n.deadline = ANY(e.seen_deadlines) END, false) AS deadline_seen "
    "FROM claimed n LEFT JOIN recipients r ON r.principal_id = n.principal_id "
    "LEFT JOIN enrollments e ON e.enrollment_id = n.enrollment_id AND r.principal_id IS NOT NULL"
)


def facts_of(row: asyncpg.Record) -> MailFacts | None:
    """The facts (see FACTS) of a claimed notification; None while its recipient is not known yet."""
    if not row["recipient_known"]:
        return None
    enrollment = (EnrollmentSummary(row["required"], row["configured"], row["enrollment_deadline"])
                  if row["enrolled"] else None)
    return MailFacts(row["email"], row["name"], row["recipient_kind"], row["deleted"], enrollment, row["deadline_seen"])
