"""The auditors' API: the full event history, a user's MFA state at a past moment, compliance then.

Lists are streamed as NDJSON and read from the database in keyset batches, so an export of
millions of records runs in constant memory; a client resumes an export with `after=<last seq>`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_contracts.text import plain_text
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import RuntimeDep
from mfaplane_gateway.audit_history import PrincipalState, states_at
from mfaplane_gateway.auth import Reader

router = APIRouter(prefix="/v1/audit", tags=["audit"])
NDJSON = "application/x-ndjson"
BATCH = 1000
MAX_SEQ = 2**63 - 1  # audit_log.seq is a PostgreSQL bigint
NOT_SET_UP = (MFAStatus.ENROLLING, MFAStatus.EXPIRED, MFAStatus.REQUIRED_NO_PERIOD)


def _not_a_number(value: Any) -> Any:
    """pydantic would read 1700000000 as Unix seconds; the contract is an RFC 3339 date-time."""
    try:
        float(value)
    except (TypeError, ValueError):
        return value
    raise ValueError("expected an RFC 3339 date-time with its UTC offset")


DateTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
Moment = Annotated[DateTime | None, Query(description="a past moment, with its UTC offset; default now")]


class NDJSONResponse(StreamingResponse):
    media_type = NDJSON


def _lines_of(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


class AuditRecord(BaseModel):
    seq: int
    prev_hash: str = Field(description="the previous record's hash (64 zeros for the first)")
    hash: str = Field(description="SHA-256 over seq, prev_hash and the canonical JSON of the envelope")
    envelope: Envelope


class PrincipalStateAt(BaseModel):
    principal_id: uuid.UUID
    kind: Literal["user", "admin"]
    email: str | None
    name: str | None
    status: MFAStatus
    required: bool
    configured: bool
    deadline: datetime | None
    deleted: bool
    as_of: datetime

    @classmethod
    def of(cls, state: PrincipalState, at: datetime) -> PrincipalStateAt:
        return cls(principal_id=state.principal_id, kind=state.kind, email=state.email, name=state.name,
                   status=state.status(at), required=state.required, configured=state.configured,
                   deadline=state.deadline, deleted=state.deleted, as_of=at)


def _past(at: datetime | None, now: datetime) -> datetime:
    if at is not None and at > now:
        raise Rejected("moment_in_future", "History is only known up to now: `at` must not be later.", 400)
    return at or now


def _event_filter(principal_id: uuid.UUID | None, types: list[str] | None, actor: str | None,
                  occurred_from: datetime | None, occurred_to: datetime | None) -> tuple[str, list[Any]]:
    unknown = sorted(set(types or ()) - set(EVENT_TYPES))
    if unknown:
        raise Rejected("unknown_event_type", f"No such event type: {', '.join(unknown)}.", 400)
    if occurred_from and occurred_to and occurred_from > occurred_to:
        raise Rejected("invalid_time_range", "`from` must not be later than `to`.", 400)
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params) + 2}"  # $1 and $2 are the cursor and the batch size

    conditions = ["true"]
    if principal_id:
        conditions.append(f"principal_id = {bind(principal_id)}")
    if types:
        conditions.append(f"type = ANY({bind(types)}::text[])")
    if actor:
        conditions.append(f"actor = {bind(actor)}")
    if occurred_from:
        conditions.append(f"occurred_at >= {bind(occurred_from)}")
    if occurred_to:
        conditions.append(f"occurred_at <= {bind(occurred_to)}")
    return " AND ".join(conditions), params


async def _records(pool: asyncpg.Pool, where: str, params: list[Any], after: int,
                   limit: int | None) -> AsyncIterator[str]:
    while limit is None or limit > 0:
        batch = BATCH if limit is None else min(BATCH, limit)
        rows = await pool.fetch(f"SELECT seq, prev_hash, hash, envelope FROM audit_log WHERE seq > $1 AND {where} "
                                "ORDER BY seq LIMIT $2", after, batch, *params)
        for row in rows:
            yield json.dumps(dict(row), ensure_ascii=False) + "\n"
        if len(rows) < batch:
            return
        after, limit = rows[-1]["seq"], None if limit is None else limit - len(rows)


@router.get("/events", response_class=NDJSONResponse,
            responses=_lines_of(AuditRecord, "One AuditRecord per line, in the order the gateway received the "
                                              "events (seq order)."))
async def export_events(
    runtime: RuntimeDep, _: Reader,
    principal_id: Annotated[uuid.UUID | None, Query(description="events about this user or admin")] = None,
    event_type: Annotated[list[str] | None, Query(alias="type", max_length=50, description="any of these")] = None,
    actor: Annotated[plain_text(300) | None, Query(description="e.g. api_key:<id>, user:<id>")] = None,
    occurred_from: Annotated[DateTime | None, Query(alias="from")] = None,
    occurred_to: Annotated[DateTime | None, Query(alias="to")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="resume after this seq (the last one received)")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="at most this many records; default all")] = None,
) -> NDJSONResponse:
    where, params = _event_filter(principal_id, event_type, actor, occurred_from, occurred_to)
    return NDJSONResponse(_records(runtime.pool, where, params, after, limit))


@router.get("/users/{principal_id}/state")
async def state_at(principal_id: uuid.UUID, runtime: RuntimeDep, _: Reader, at: Moment = None) -> PrincipalStateAt:
    """The MFA status a user (or admin) had at `at`, folded from the events before it."""
    moment = _past(at, runtime.clock.now())
    state = await anext(states_at(runtime.pool, moment, principal_id), None)
    if state is None or state.kind is None:
        raise Rejected("user_not_found", "No such user at that moment.", 404)
    return PrincipalStateAt.of(state, moment)


async def _not_set_up(pool: asyncpg.Pool, at: datetime, kind: str) -> AsyncIterator[str]:
    async for state in states_at(pool, at):
        if state.kind == kind and state.status(at) in NOT_SET_UP:
            yield PrincipalStateAt.of(state, at).model_dump_json() + "\n"


@router.get("/compliance", response_class=NDJSONResponse,
            responses=_lines_of(PrincipalStateAt, "One PrincipalStateAt per line, in principal_id order: each "
                                "user who was required to use MFA but had not set it up at `at` (enrolling, "
                                "expired or required_no_period)."))
async def compliance(runtime: RuntimeDep, _: Reader, at: Moment = None,
                     kind: Literal["user", "admin"] = "user") -> NDJSONResponse:
    moment = _past(at, runtime.clock.now())
    return NDJSONResponse(_not_set_up(runtime.pool, moment, kind))
