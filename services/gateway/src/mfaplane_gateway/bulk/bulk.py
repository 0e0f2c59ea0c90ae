"""Bulk actions on users' MFA: require, extend or reset for a list of ids or for a filter.

A dry run answers who would change and writes nothing. Otherwise the request becomes an
operation with one item per user, committed before the answer, and the bulk worker (in every
gateway replica) works the items off: it claims up to CHUNK items with a lease and sends them to
the mfa service as one batch of commands, each with an idempotency key made from the operation
and the user, so an item interrupted by a restart is applied once when it is picked up again.
The route takes up to MAX_IDS ids, so it has its own request size limit (MAX_REQUEST_BYTES).
An item mfa answers with a 5xx (or a batch it does not answer) keeps its lease and is tried again
when the lease runs out; its `reason` says why meanwhile. An operation counts the users it changed,
those already as asked (mfa wrote nothing for them) and those it failed for; each applied item keeps
the version its user's enrollment reached, which the operation's consistency token waits for
(read_your_writes.py).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Literal, NamedTuple

import asyncpg
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, model_validator

from mfaplane_chassis.problems import ServiceUnavailable
from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import mfa_api
from mfaplane_contracts.mfa_events import enrollment_days
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing import loops
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.api_versions import deprecated_shape
from mfaplane_gateway.api.shapes import Body
from mfaplane_gateway.edge.auth import Admin, Reader
from mfaplane_gateway.edge.forwarding import Forwarder
from mfaplane_gateway.read_models import read_your_writes
from mfaplane_gateway.read_models.principals_query import STATUS_SQL, PrincipalFilter, SearchText, set_up_asked
from mfaplane_gateway.read_models.registry import LIVE_TABLES

router = APIRouter(prefix="/v1", tags=["bulk actions"])
Action = Literal["require", "extend", "reset"]
MAX_IDS = 100_000
ID_BYTES = 40  # one id in the JSON list: 36 characters, quotes, a comma and a space
MAX_REQUEST_BYTES = MAX_IDS * ID_BYTES + 64 * 1024  # the ids and room for the rest of the request
# Items in flight per replica: WORKERS batches of CHUNK, each appended by mfa with one statement (its
# time: docs/performance.md, bulk require). One batch must stay well within the forwarder's 10 s timeout
# on a loaded machine (else it is retried).
WORKERS = 2
CHUNK = 500
SCOPE = read_your_writes.USER_BULK_SCOPE
LEASE_SECONDS = 60
IDLE_SECONDS = 0.2
# What an action would do to a user, given the state in the read model: 'change', 'unchanged' (already as
# asked) or the code mfa refuses it with (rule 6: extend only while required and not set up).
OUTCOMES: dict[str, str] = {
    "require": "CASE WHEN required THEN 'unchanged' ELSE 'change' END",
    "extend": "CASE WHEN NOT required THEN 'not_required' WHEN configured THEN 'already_set_up' ELSE 'change' END",
    "reset": "'change'",
}


class Selection(Body):
    status: list[MFAStatus] | None = None
    required: bool | None = None
    set_up: bool | None = None
    mfa_active: bool | None = Field(default=None, deprecated=True, description=(
        "deprecated (use `set_up`): the same filter, answered with Deprecation and Sunset headers"))
    q: SearchText | None = None

    def as_filter(self) -> PrincipalFilter:
        asked = self.model_dump(include={"set_up", "mfa_active"})  # reading the deprecated attribute would warn
        return PrincipalFilter(kind="user", statuses=tuple(self.status or ()), required=self.required,
                               set_up=set_up_asked(**asked), search=self.q)


class BulkRequest(Body):
    action: Action
    enrollment_days: int | None = enrollment_days(default=7, strict=True)
    user_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    filter: Selection | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> BulkRequest:
        if (self.user_ids is None) == (self.filter is None):
            raise ValueError("give either user_ids or filter")
        if self.enrollment_days is None and self.action != "require":
            raise ValueError("extend and reset need enrollment_days")
        return self


class Failure(BaseModel):
    user_id: uuid.UUID
    reason: str


class DryRun(BaseModel):
    would_change: list[uuid.UUID]
    unchanged: list[uuid.UUID] = Field(description="already as asked: nothing would be written for them")
    refused: list[Failure] = Field(description="users the action would be refused for, with the problem code "
                                               "(`not_required`, `already_set_up`)")
    not_found: list[uuid.UUID]


class Operation(BaseModel):
    id: uuid.UUID
    action: Action
    enrollment_days: int | None
    state: Literal["running", "completed"]
    total: int
    done: int = Field(description="applied: changed plus unchanged")
    changed: int = Field(description="users the action changed")
    unchanged: int = Field(description="users already as asked; nothing was written for them")
    failed: list[Failure]
    created_at: datetime
    completed_at: datetime | None
    consistency_token: str = Field(description="pass as ?consistent_with= to read every change of the operation "
                                               "back (503 operation_running while it is running)")


async def _targets(pool: asyncpg.Pool, now: datetime, body: BulkRequest) -> list[asyncpg.Record]:
    """The targeted users that exist, each with what the action would do to it (OUTCOMES)."""
    params: list = [now]
    if body.user_ids is not None:
        params.append(list(dict.fromkeys(body.user_ids)))
        where = f"principal_id = ANY(${len(params)}::uuid[]) AND kind = 'user' AND NOT deleted AND email IS NOT NULL"
    else:
        assert body.filter is not None  # BulkRequest takes user_ids or a filter
        selection: Selection = body.filter  # typed, so the API docs find the refusals of its filter
        where = selection.as_filter().where(params)
    return await pool.fetch(
        f"SELECT principal_id, {OUTCOMES[body.action]} AS outcome, {STATUS_SQL} AS status "
        f"FROM {LIVE_TABLES['principals']} WHERE {where} ORDER BY principal_id",
        *params,
    )


PATH = f"{router.prefix}/users/mfa/bulk"


@router.post(PATH.removeprefix(router.prefix), status_code=202, response_model=Operation | DryRun,
             summary="Require, extend or reset MFA for many users")
async def start_bulk_action(body: BulkRequest, caller: Admin, runtime: RuntimeDep,
                            response: Response) -> Operation | DryRun:
    if body.filter and "mfa_active" in body.filter.model_fields_set:
        deprecated_shape(response)
    now = runtime.clock.now()
    targets = await _targets(runtime.pool, now, body)
    found = {row["principal_id"] for row in targets}
    missing = [i for i in dict.fromkeys(body.user_ids or ()) if i not in found]
    if body.dry_run:
        return DryRun(would_change=[r["principal_id"] for r in targets if r["outcome"] == "change"],
                      unchanged=[r["principal_id"] for r in targets if r["outcome"] == "unchanged"],
                      refused=[Failure(user_id=r["principal_id"], reason=r["outcome"]) for r in targets
                               if r["outcome"] not in ("change", "unchanged")],
                      not_found=missing)
    operation_id = uuid.uuid4()
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO bulk_operations (operation_id, action, enrollment_days, actor, created_at) "
            "VALUES ($1, $2, $3, $4, now())",
            operation_id, body.action, body.enrollment_days, caller.actor,
        )
        await conn.executemany(
            "INSERT INTO bulk_operation_items (operation_id, user_id, state, reason) VALUES ($1, $2, $3, $4)",
            [(operation_id, user, "pending", None) for user in found]
            + [(operation_id, user, "failed", "user_not_found") for user in missing],
        )
    return await operation(runtime.pool, operation_id)


async def operation(pool: asyncpg.Pool | asyncpg.Connection, operation_id: uuid.UUID) -> Operation:
    head = await pool.fetchrow("SELECT * FROM bulk_operations WHERE operation_id = $1", operation_id)
    if head is None:
        raise Rejected("operation_not_found", "No such bulk operation.", Refusal.NOT_FOUND)
    # An item applied by a release that did not record `changed` (null) counts as changed.
    counts = await pool.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'done') AS done, "
        "count(*) FILTER (WHERE state = 'done' AND changed IS NOT FALSE) AS changed, "
        "count(*) FILTER (WHERE state = 'done' AND changed IS FALSE) AS unchanged, "
        "count(*) FILTER (WHERE state = 'pending') AS pending FROM bulk_operation_items WHERE operation_id = $1",
        operation_id,
    )
    failures = await pool.fetch(
        "SELECT user_id, reason FROM bulk_operation_items WHERE operation_id = $1 AND state = 'failed' "
        "ORDER BY user_id", operation_id,
    )
    return Operation(
        id=operation_id, action=head["action"], enrollment_days=head["enrollment_days"],
        state="running" if counts["pending"] else "completed", total=counts["total"], done=counts["done"],
        changed=counts["changed"], unchanged=counts["unchanged"],
        failed=[Failure(user_id=r["user_id"], reason=r["reason"]) for r in failures],
        created_at=head["created_at"], completed_at=head["completed_at"],
        consistency_token=read_your_writes.bulk_token(operation_id),
    )


@router.get("/bulk-operations/{operation_id}", summary="Progress of a bulk action")
async def get_bulk_operation(operation_id: uuid.UUID, _: Reader, runtime: RuntimeDep) -> Operation:
    return await operation(runtime.pool, operation_id)


class BulkWorker:
    """Works off pending bulk items in every gateway replica; leases keep replicas apart."""

    def __init__(self, runtime: Runtime, forward: Forwarder) -> None:
        self._pool = runtime.pool
        self._forward = forward

    def tasks(self) -> list:
        return [self._work() for _ in range(WORKERS)]

    async def _work(self) -> None:
        await loops.repeat("bulk worker", self.process_chunk, IDLE_SECONDS)

    async def process_chunk(self) -> bool:
        """Claims up to CHUNK pending items and applies them; False when none was pending."""
        items = await self._pool.fetch(
            "WITH claimable AS ("  # a locking CTE is evaluated once, never inlined
            "  SELECT operation_id, user_id FROM bulk_operation_items WHERE state = 'pending' "
            "  AND (claimed_until IS NULL OR claimed_until < now()) LIMIT $2 FOR UPDATE SKIP LOCKED"
            ") UPDATE bulk_operation_items i SET claimed_until = now() + make_interval(secs => $1) "
            "FROM claimable c, bulk_operations o "
            "WHERE (i.operation_id, i.user_id) = (c.operation_id, c.user_id) AND o.operation_id = i.operation_id "
            "RETURNING i.operation_id, i.user_id, o.action, o.enrollment_days, o.actor",
            LEASE_SECONDS, CHUNK,
        )
        for _, operation_items in itertools.groupby(sorted(items, key=_operation), key=_operation):
            await self._apply(list(operation_items))
        return bool(items)

    async def _apply(self, items: list[asyncpg.Record]) -> None:
        """Sends one operation's claimed items to mfa as one batch and records each one's outcome."""
        head = items[0]
        commands = [mfa_api.BatchCommand(command_id=_command_id(head, item["user_id"]), action=head["action"],
                                         scope=SCOPE, principal_id=item["user_id"],
                                         enrollment_days=head["enrollment_days"]) for item in items]
        try:
            answer = await self._forward.call(mfa_api.BATCH, head["actor"], mfa_api.Batch(commands=commands))
        except ServiceUnavailable as outage:
            outcomes = [Outcome("pending", outage.code)] * len(items)
        except Rejected as refused:
            outcomes = [Outcome("failed", refused.code)] * len(items)
        else:
            outcomes = [_outcome(result) for result in answer.results]
        await self._finish(head["operation_id"], {item["user_id"]: outcome for item, outcome in
                                                  zip(items, outcomes, strict=True)})

    async def _finish(self, operation_id: uuid.UUID, outcomes: dict[uuid.UUID, Outcome]) -> None:
        """Records each item's outcome; an item still pending keeps its lease, to be tried again after it."""
        states, reasons, changed, versions = zip(*outcomes.values(), strict=True)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bulk_operation_items i SET state = o.state, reason = o.reason, changed = o.changed, "
                "version = o.version, claimed_until = CASE WHEN o.state = 'pending' THEN i.claimed_until END "
                "FROM unnest($2::uuid[], $3::text[], $4::text[], $5::boolean[], $6::int[]) "
                "AS o(user_id, state, reason, changed, version) "
                "WHERE i.operation_id = $1 AND i.user_id = o.user_id",
                operation_id, list(outcomes), states, reasons, changed, versions,
            )
            await conn.execute(
                "UPDATE bulk_operations SET completed_at = now() WHERE operation_id = $1 AND completed_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM bulk_operation_items WHERE operation_id = $1 AND state = 'pending')",
                operation_id,
            )


def _operation(item: asyncpg.Record) -> uuid.UUID:
    return item["operation_id"]


def _command_id(item: asyncpg.Record, user_id: uuid.UUID) -> uuid.UUID:
    """The id the item's command has whichever way it is sent (on its own, or in a batch): an item sent
    again after a crash applies once."""
    endpoint = mfa_api.BATCH_ACTIONS[item["action"]]
    return endpoint.command_id(item["actor"], {"scope": SCOPE, "principal_id": user_id},
                               f"bulk:{item['operation_id']}")


class Outcome(NamedTuple):
    """What became of an item: `done` (with whether it changed the user, and the version the user's
    enrollment reached), `failed` (with the problem code) or still `pending` (with why: tried again when
    its lease runs out)."""

    state: str
    reason: str | None = None
    changed: bool | None = None
    version: int | None = None


def _outcome(result: mfa_api.BatchResult) -> Outcome:
    if result.problem is None:
        assert result.receipt is not None  # a result has a receipt or a problem
        return Outcome("done", changed=bool(result.receipt.event_ids), version=result.receipt.version)
    return Outcome("pending" if result.problem.status >= 500 else "failed", result.problem.code)
