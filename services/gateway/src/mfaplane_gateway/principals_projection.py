"""Reducers from events to the principals and resources read models: one SQL statement each.

Topics are not ordered with respect to each other, so an enrollment event can arrive before the
UserCreated it belongs to: every reducer upserts, touching only its own columns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload

Reducer = Callable[[asyncpg.Connection, dict[str, str], Envelope, EventPayload], Awaitable[None]]
KEY_FIELDS = ("principal_id", "user_id", "admin_id", "system_id")


def upsert(model: str, fields: tuple[str, ...] = (), **columns: str | tuple[str, str]) -> Reducer:
    """Upserts the row keyed by the event's subject in read model `model`.

    `columns` maps a column to the SQL value it gets ($3, $4... are `fields` of the event, in
    order); a pair gives the value for a new row and the expression for an existing one.
    """
    key = "system_id" if model == "resources" else "principal_id"
    inserts = {c: v[0] if isinstance(v, tuple) else v for c, v in columns.items()}
    updates = ", ".join(f"{c} = {v[1] if isinstance(v, tuple) else 'EXCLUDED.' + c}" for c, v in columns.items())
    template = (
        f"INSERT INTO {{table}} ({key}, updated_at, {', '.join(inserts)}) "
        f"VALUES ($1, $2, {', '.join(inserts.values())}) "
        f"ON CONFLICT ({key}) DO UPDATE SET updated_at = EXCLUDED.updated_at, {updates}"
    )

    async def reduce(conn: asyncpg.Connection, tables: dict[str, str], envelope: Envelope, body: EventPayload) -> None:
        subject = next(getattr(body, f) for f in KEY_FIELDS if hasattr(body, f))
        await conn.execute(template.format(table=tables[model]), subject, envelope.occurred_at,
                           *(getattr(body, f) for f in fields))

    return reduce


def _principals(fields: tuple[str, ...] = (), **columns: str | tuple[str, str]) -> Reducer:
    return upsert("principals", fields, **columns)


REDUCERS: dict[type[EventPayload], Reducer] = {
    identity.UserCreated: _principals(("email", "name"), kind="'user'", email="$3", name="$4"),
    identity.AdminCreated: _principals(("email", "name"), kind="'admin'", email="$3", name="$4"),
    identity.UserUpdated: _principals(("email", "name"), email="$3", name="$4"),
    identity.UserDeleted: _principals(deleted="true", required="false", configured="false"),
    mfa.MFARequired: _principals(("deadline", "enrollment_days"), required="true", deadline="$3",
                                 enrollment_days="$4"),
    mfa.MFARequirementRemoved: _principals(required="false", deadline="NULL", enrollment_days="NULL"),
    mfa.EnrollmentExtended: _principals(("deadline", "enrollment_days"), deadline="$3", enrollment_days="$4"),
    mfa.MFAReset: _principals(("deadline", "enrollment_days"), required="true", configured="false",
                              deadline="$3", enrollment_days="$4", dismissals="0"),
    mfa.TOTPEnrolled: _principals(configured="true"),
    mfa.TOTPVerified: _principals(last_verified_at="$2"),
    mfa.EnrollmentPromptDismissed: _principals(dismissals=("1", "{table}.dismissals + 1")),
    identity.SystemRegistered: upsert("resources", ("name", "kind"), name="$3", kind="$4"),
    identity.SystemMFAEnabled: upsert("resources", mfa_enabled="true"),
    identity.SystemMFADisabled: upsert("resources", mfa_enabled="false"),
}
