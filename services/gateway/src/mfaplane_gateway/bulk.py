"""Bulk actions on users' MFA: require, extend or reset for a list of ids or for a filter.

A dry run answers who would change and writes nothing. Otherwise the request becomes an
operation with one item per user, committed before the answer, and the bulk worker (in every
gateway replica) works the items off: each item is claimed with a lease and forwarded to the mfa
service with an idempotency key made from the operation and the user, so an item interrupted by
a restart is applied once when it is picked up again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import Runtime, RuntimeDep
from mfaplane_gateway.auth import Admin, Reader
from mfaplane_gateway.enrollment_admin import send_enrollment_command
from mfaplane_gateway.forwarding import Forwarder
from mfaplane_gateway.principals_query import STATUS_SQL, PrincipalFilter
from mfaplane_gateway.projector import LIVE_TABLES

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["bulk actions"])
Action = Literal["require", "extend", "reset"]
MAX_IDS = 100_000
WORKERS = 8
LEASE_SECONDS = 60
IDLE_SECONDS = 0.2
# Who an action changes, given the state in the read model (rule 6: extend only while not set up).
CHANGES: dict[str, str] = {
    "require": "NOT required",
    "extend": "required AND NOT configured",
    "reset": "true",
}


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: list[MFAStatus] | None = None
    required: bool | None = None
    mfa_active: bool | None = None
    q: str | None = Field(default=None, max_length=200)

    def as_filter(self) -> PrincipalFilter:
        return PrincipalFilter(kind="user", statuses=tuple(self.status or ()), required=self.required,
                               mfa_active=self.mfa_active, search=self.q)


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Action
    enrollment_days: int | None = Field(default=7, ge=1, le=365)
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


class DryRun(BaseModel):
    would_change: list[uuid.UUID]
    unchanged: list[uuid.UUID]
    not_found: list[uuid.UUID]


class Failure(BaseModel):
    user_id: uuid.UUID
    reason: str


class Operation(BaseModel):
    id: uuid.UUID
    action: Action
    enrollment_days: int | None
    state: Literal["running", "completed"]
    total: int
    done: int
    failed: list[Failure]
    created_at: datetime
    completed_at: datetime | None


async def _targets(pool: asyncpg.Pool, now: datetime, body: BulkRequest) -> list[asyncpg.Record]:
    """The targeted users that exist, each with whether the action would change it."""
    params: list = [now]
    if body.user_ids is not None:
        params.append(list(dict.fromkeys(body.user_ids)))
        where = f"principal_id = ANY(${len(params)}::uuid[]) AND kind = 'user' AND NOT deleted AND email IS NOT NULL"
    else:
        where = body.filter.as_filter().where(params)
    return await pool.fetch(
        f"SELECT principal_id, {CHANGES[body.action]} AS changes, {STATUS_SQL} AS status "
        f"FROM {LIVE_TABLES['principals']} WHERE {where} ORDER BY principal_id",
        *params,
    )


@router.post("/users/mfa/bulk", status_code=202, response_model=Operation | DryRun)
async def start_bulk_action(body: BulkRequest, caller: Admin, runtime: RuntimeDep) -> Operation | DryRun:
    now = runtime.clock.now()
    targets = await _targets(runtime.pool, now, body)
    found = {row["principal_id"] for row in targets}
    missing = [i for i in dict.fromkeys(body.user_ids or ()) if i not in found]
    if body.dry_run:
        return DryRun(would_change=[r["principal_id"] for r in targets if r["changes"]],
                      unchanged=[r["principal_id"] for r in targets if not r["changes"]], not_found=missing)
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
        raise Rejected("operation_not_found", "No such bulk operation.", 404)
    counts = await pool.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'done') AS done, "
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
        failed=[Failure(user_id=r["user_id"], reason=r["reason"]) for r in failures],
        created_at=head["created_at"], completed_at=head["completed_at"],
    )


@router.get("/bulk-operations/{operation_id}")
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
        while True:
            try:
                if not await self.process_one():
                    await asyncio.sleep(IDLE_SECONDS)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("bulk worker database error", extra={"error": repr(error)})
                await asyncio.sleep(IDLE_SECONDS)

    async def process_one(self) -> bool:
        item = await self._pool.fetchrow(
            "UPDATE bulk_operation_items i SET claimed_until = now() + make_interval(secs => $1) "
            "FROM bulk_operations o WHERE o.operation_id = i.operation_id AND (i.operation_id, i.user_id) = ("
            "  SELECT operation_id, user_id FROM bulk_operation_items WHERE state = 'pending' "
            "  AND (claimed_until IS NULL OR claimed_until < now()) LIMIT 1 FOR UPDATE SKIP LOCKED"
            ") RETURNING i.operation_id, i.user_id, o.action, o.enrollment_days, o.actor",
            LEASE_SECONDS,
        )
        if item is None:
            return False
        state, reason = "done", None
        try:
            await send_enrollment_command(
                self._forward, item["actor"], "user_portal", item["user_id"], item["action"],
                {"enrollment_days": item["enrollment_days"]}, idempotency_key=f"bulk:{item['operation_id']}",
            )
        except Rejected as refused:
            if refused.status == 503:
                return True  # the lease runs out and the item is tried again
            state, reason = "failed", refused.code
        await self._finish(item["operation_id"], item["user_id"], state, reason)
        return True

    async def _finish(self, operation_id: uuid.UUID, user_id: uuid.UUID, state: str, reason: str | None) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bulk_operation_items SET state = $3, reason = $4, claimed_until = NULL "
                "WHERE operation_id = $1 AND user_id = $2", operation_id, user_id, state, reason,
            )
            await conn.execute(
                "UPDATE bulk_operations SET completed_at = now() WHERE operation_id = $1 AND completed_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM bulk_operation_items WHERE operation_id = $1 AND state = 'pending')",
                operation_id,
            )
