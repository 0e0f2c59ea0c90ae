"""The auditors' API: the full event history, a user's MFA state at a past moment, compliance then.

Everything is told in story order (audit_order.py): each aggregate's events in version order, and
across aggregates in the order things happened, not the order the topics delivered them. Lists are
streamed as NDJSON and read from the database in keyset batches, so an export of millions of
records runs in constant memory; each record carries the cursor that resumes an export after it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_contracts.text import plain_text
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.api_versions import VERSIONED_RESPONSE, deprecated_shape
from mfaplane_gateway.audit import audit_order
from mfaplane_gateway.audit.audit_history import PrincipalState, states_at
from mfaplane_gateway.edge.auth import Reader

router = APIRouter(prefix="/v1/audit", tags=["audit"])
NDJSON = "application/x-ndjson"
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


def _lines_of(model: type[BaseModel], description: str, **more: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description, **more}}


class AuditRecord(BaseModel):
    seq: int = Field(description="the record's place in the hash chain: the order the gateway stored the events")
    story_at: datetime = Field(description="the record's place in the story, which lists are ordered by (then "
                                           "by seq): the event's occurred_at, but never before its aggregate's "
                                           "previous record and never after the gateway stored it")
    prev_hash: str = Field(description="the previous record's hash (64 zeros for the first)")
    hash: str = Field(description="SHA-256 over seq, prev_hash and the canonical JSON of the envelope")
    envelope: Envelope
    cursor: str = Field(description="pass it as `cursor` to resume the list after this record")


class PrincipalStateAt(BaseModel):
    principal_id: uuid.UUID
    kind: Literal["user", "admin"]
    email: str | None
    name: str | None
    status: MFAStatus
    required: bool
    set_up: bool
    configured: bool = Field(deprecated=True, description="deprecated (use `set_up`): the same")
    deadline: datetime | None
    deleted: bool
    as_of: datetime

    @classmethod
    def of(cls, state: PrincipalState, at: datetime) -> PrincipalStateAt:
        return cls(principal_id=state.principal_id, kind=state.kind, email=state.email, name=state.name,
                   status=state.status(at), required=state.required, set_up=state.set_up, configured=state.set_up,
                   deadline=state.deadline, deleted=state.deleted, as_of=at)


def _past(at: datetime | None, now: datetime) -> datetime:
    if at is not None and at > now:
        raise Rejected("moment_in_future", "History is only known up to now: `at` must not be later.", Refusal.INVALID)
    return at or now


def _event_filter(principal_id: uuid.UUID | None, types: list[str] | None, actor: str | None,
                  occurred_from: datetime | None, occurred_to: datetime | None) -> tuple[str, list[Any]]:
    unknown = sorted(set(types or ()) - set(EVENT_TYPES))
    if unknown:
        raise Rejected("unknown_event_type", f"No such event type: {', '.join(unknown)}.", Refusal.INVALID)
    if occurred_from and occurred_to and occurred_from > occurred_to:
        raise Rejected("invalid_time_range", "`from` must not be later than `to`.", Refusal.INVALID)
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params) + audit_order.FIRST_FILTER_PARAM - 1}"

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


async def _lines(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    async for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def _position(cursor: str | None, after: int) -> audit_order.Position | None:
    if cursor is None:
        return None
    if after:
        raise Rejected("invalid_cursor", "Give `cursor` or `after`, not both.", Refusal.INVALID)
    return audit_order.Position.of_cursor(cursor)


@router.get("/events", response_class=NDJSONResponse, summary="Export audit events (NDJSON)",
            responses=_lines_of(AuditRecord, "One AuditRecord per line, in story order: by story_at, then seq. Each "
                                "aggregate's events come in version order, and across aggregates in the order they "
                                "happened, whatever order the topics delivered them in. Only settled records are "
                                "listed (story_at at least the gateway's AUDIT_SETTLE_SECONDS, 60 by default, in the "
                                "past), so that events in flight take their place before a reader passes it. "
                                "Resuming from a record's `cursor` gives each record not yet had, once; an event that "
                                "reaches the gateway later than that, after its place was served, comes in a later "
                                "read, its story_at saying where it belongs. The hash chain runs in seq order: a "
                                "complete export (no filter, read to its end) holds records 1 to n, which "
                                "`verify-audit --file` checks. Deprecation and Sunset headers: `after` was given.",
                                headers=VERSIONED_RESPONSE[200]["headers"]))
async def export_events(
    runtime: RuntimeDep, _: Reader,
    principal_id: Annotated[uuid.UUID | None, Query(description="events about this user or admin")] = None,
    event_type: Annotated[list[str] | None, Query(alias="type", max_length=50, description="any of these")] = None,
    # plain_text makes its Annotated type at run time, which mypy cannot follow
    actor: Annotated[plain_text(300) | None,  # type: ignore[valid-type]
                     Query(description="e.g. api_key:<id>, user:<id>")] = None,
    occurred_from: Annotated[DateTime | None, Query(alias="from", description="events that occurred at or after "
                                                                             "this moment (occurred_at)")] = None,
    occurred_to: Annotated[DateTime | None, Query(alias="to", description="events that occurred at or before this "
                                                                         "moment")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="resume after the record that carried this "
                                                                    "cursor")] = None,
    after: Annotated[int, Query(ge=0, le=audit_order.MAX_SEQ, deprecated=True, description=(
        "deprecated, use `cursor`: resume after the record with this seq, in story order, as its cursor does, "
        "except that an event which reached the gateway after the reader had passed its place is not served"))] = 0,
    limit: Annotated[int | None, Query(ge=1, description="at most this many records; default all")] = None,
) -> NDJSONResponse:
    where, params = _event_filter(principal_id, event_type, actor, occurred_from, occurred_to)
    position = _position(cursor, after)
    horizon = runtime.clock.now() - timedelta(seconds=runtime.settings.audit_settle_seconds)
    parts = await audit_order.plan(runtime.pool, horizon, position, after)
    response = NDJSONResponse(_lines(audit_order.read(runtime.pool, parts, where, params, limit)))
    if after:
        deprecated_shape(response)
    return response


@router.get("/users/{principal_id}/state", summary="A user's or admin's MFA state at a moment")
async def state_at(principal_id: uuid.UUID, runtime: RuntimeDep, _: Reader, at: Moment = None) -> PrincipalStateAt:
    """The MFA status a user (or admin) had at `at`, folded in story order from the events whose story_at is
    not later (each aggregate's in version order). A moment within the last AUDIT_SETTLE_SECONDS may still
    change as events in flight arrive."""
    moment = _past(at, runtime.clock.now())
    state = await anext(states_at(runtime.pool, moment, principal_id), None)
    if state is None or state.kind is None:
        raise Rejected("user_not_found", "No such user at that moment.", Refusal.NOT_FOUND)
    return PrincipalStateAt.of(state, moment)


async def _not_set_up(pool: asyncpg.Pool, at: datetime, kind: str) -> AsyncIterator[str]:
    async for state in states_at(pool, at):
        if state.kind == kind and state.status(at) in NOT_SET_UP:
            yield PrincipalStateAt.of(state, at).model_dump_json() + "\n"


@router.get("/compliance", response_class=NDJSONResponse, summary="Users not set up at a moment (NDJSON)",
            responses=_lines_of(PrincipalStateAt, "One PrincipalStateAt per line, in principal_id order: each "
                                "user who was required to use MFA but had not set it up at `at` (enrolling, "
                                "expired or required_no_period)."))
async def compliance(runtime: RuntimeDep, _: Reader, at: Moment = None,
                     kind: Literal["user", "admin"] = "user") -> NDJSONResponse:
    moment = _past(at, runtime.clock.now())
    return NDJSONResponse(_not_set_up(runtime.pool, moment, kind))
