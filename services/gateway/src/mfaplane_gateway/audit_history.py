"""A principal's MFA state at any past moment, folded from the audit log's event payloads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_contracts.mfa_status import MFAStatus, mfa_status

BATCH = 1000


@dataclass(frozen=True)
class PrincipalState:
    principal_id: uuid.UUID
    kind: str | None = None  # None: not created (yet)
    email: str | None = None
    name: str | None = None
    deleted: bool = False
    required: bool = False
    configured: bool = False
    deadline: datetime | None = None

    def status(self, at: datetime) -> MFAStatus:
        return mfa_status(self.required, self.configured, self.deadline, at)


_APPLY: dict[type[EventPayload], Callable[[PrincipalState, EventPayload], PrincipalState]] = {
    identity.UserCreated: lambda s, e: replace(s, kind="user", email=e.email, name=e.name),
    identity.AdminCreated: lambda s, e: replace(s, kind="admin", email=e.email, name=e.name),
    identity.UserUpdated: lambda s, e: replace(s, email=e.email, name=e.name),
    identity.UserDeleted: lambda s, e: replace(s, deleted=True, required=False, configured=False),
    mfa.MFARequired: lambda s, e: replace(s, required=True, deadline=e.deadline),
    mfa.MFARequirementRemoved: lambda s, e: replace(s, required=False, deadline=None),
    mfa.EnrollmentExtended: lambda s, e: replace(s, deadline=e.deadline),
    mfa.MFAReset: lambda s, e: replace(s, required=True, configured=False, deadline=e.deadline),
    mfa.TOTPEnrolled: lambda s, e: replace(s, configured=True),
}
FOLDED_TYPES = [event.event_type for event in _APPLY]


def apply(state: PrincipalState, event: EventPayload) -> PrincipalState:
    change = _APPLY.get(type(event))
    return change(state, event) if change else state


async def states_at(pool: asyncpg.Pool, at: datetime, principal_id: uuid.UUID | None = None,
                    batch: int = BATCH) -> AsyncIterator[PrincipalState]:
    """Each principal's state at `at` (or just `principal_id`'s), in principal order, in constant memory.

    History is read by keyset on (principal_id, seq), so one principal's events may span batches.
    """
    only = "principal_id = $6" if principal_id else "principal_id IS NOT NULL"
    key: tuple[uuid.UUID, int] = (uuid.UUID(int=0), 0)
    state: PrincipalState | None = None
    while rows := await pool.fetch(
        "SELECT principal_id, seq, envelope FROM audit_log WHERE (principal_id, seq) > ($1, $2) "
        f"AND type = ANY($3::text[]) AND occurred_at <= $4 AND {only} ORDER BY principal_id, seq LIMIT $5",
        *key, FOLDED_TYPES, at, batch, *([principal_id] if principal_id else []),
    ):
        for row in rows:
            if state is not None and state.principal_id != row["principal_id"]:
                yield state
                state = None
            body = Envelope.model_validate(row["envelope"]).body()
            state = apply(state or PrincipalState(row["principal_id"]), body)
        key = (rows[-1]["principal_id"], rows[-1]["seq"])
    if state is not None:
        yield state
