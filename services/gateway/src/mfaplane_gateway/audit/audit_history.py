"""A principal's MFA state at any past moment, folded from the audit log's event payloads in story order
(audit_order.py): the events whose story_at is not later than the moment, each aggregate's in version order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import asyncpg

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_status import MFAStatus, mfa_status
from mfaplane_gateway.audit.audit_order import BEFORE_ALL
from mfaplane_gateway.read_models.principals_projection import CLEARED_BY_DELETION, REDUCERS

BATCH = 1000


@dataclass(frozen=True)
class PrincipalState:
    principal_id: uuid.UUID
    kind: str | None = None  # None: not created (yet)
    email: str | None = None
    name: str | None = None
    deleted: bool = False
    required: bool = False
    set_up: bool = False
    deadline: datetime | None = None

    def status(self, at: datetime) -> MFAStatus:
        return mfa_status(self.required, self.set_up, self.deadline, at)


_FIELDS = {f.name for f in fields(PrincipalState)} - {"principal_id"}
# The principals read model's own reducers, on the fields kept here: the past follows the same rules as
# the live list (events that touch none of these fields, such as a verification, are not read).
_REDUCERS = {payload: reducer for payload, reducer in REDUCERS.items()
             if reducer.model == "principals" and _FIELDS & reducer.columns.keys()}
FOLDED_TYPES = [payload.event_type for payload in _REDUCERS]


def apply(state: PrincipalState, envelope: Envelope) -> PrincipalState:
    body = envelope.body()
    reducer = _REDUCERS.get(type(body))
    if reducer is None:
        return state
    # callable: a value, not an increment (the history keeps no counts)
    after = replace(state, **{column: value(envelope.occurred_at, body)
                              for column, value in reducer.columns.items() if column in _FIELDS and callable(value)})
    cleared: dict[str, Any] = dict.fromkeys(CLEARED_BY_DELETION, False)
    return replace(after, **cleared) if after.deleted else after


async def states_at(pool: asyncpg.Pool, at: datetime, principal_id: uuid.UUID | None = None,
                    batch: int = BATCH) -> AsyncIterator[PrincipalState]:
    """Each principal's state at `at` (or just `principal_id`'s), in principal order, in constant memory.

    History is read by keyset on (principal_id, story_at, seq), so one principal's events may span batches.
    """
    only = "principal_id = $7" if principal_id else "principal_id IS NOT NULL"
    key: tuple[uuid.UUID, datetime, int] = (uuid.UUID(int=0), BEFORE_ALL, 0)
    state: PrincipalState | None = None
    while rows := await pool.fetch(
        "SELECT principal_id, story_at, seq, envelope FROM audit_log WHERE (principal_id, story_at, seq) > "
        f"($1, $2, $3) AND type = ANY($4::text[]) AND story_at <= $5 AND {only} "
        "ORDER BY principal_id, story_at, seq LIMIT $6",
        *key, FOLDED_TYPES, at, batch, *([principal_id] if principal_id else []),
    ):
        for row in rows:
            if state is not None and state.principal_id != row["principal_id"]:
                yield state
                state = None
            state = apply(state or PrincipalState(row["principal_id"]), Envelope.model_validate(row["envelope"]))
        key = (rows[-1]["principal_id"], rows[-1]["story_at"], rows[-1]["seq"])
    if state is not None:
        yield state
