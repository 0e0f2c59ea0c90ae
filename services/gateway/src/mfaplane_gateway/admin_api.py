"""Admins (separate principals with their own admin-portal enrollment) and API credentials."""

from __future__ import annotations

import uuid

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.identity_events import ApiRole
from mfaplane_contracts.text import DisplayName
from mfaplane_eventing.service import RuntimeDep
from mfaplane_gateway.api import (ConsistentWith, IdempotencyKey, NewPrincipal, PageRequestDep, User, one_principal,
                                  principal_filter, principals_page)
from mfaplane_gateway.auth import Admin, Reader
from mfaplane_gateway.forwarding import ForwarderDep
from mfaplane_gateway.principals_query import PrincipalFilter
from mfaplane_gateway.receipts import Receipt, receipt
from mfaplane_gateway.sessions import end_sessions_before

router = APIRouter(prefix="/v1", tags=["admins and API keys"])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewApiKey(Body):
    role: ApiRole
    name: DisplayName


class IssuedApiKey(Receipt):
    key_id: uuid.UUID
    role: ApiRole
    key: str = Field(description="shown once; only its hash is kept")


@router.post("/admins", status_code=201)
async def create_admin(body: NewPrincipal, caller: Admin, forward: ForwarderDep,
                       idempotency_key: IdempotencyKey = None) -> Receipt:
    return receipt(await forward.send("identity", "POST", "/admins", caller.actor, body.model_dump(), idempotency_key))


class AdminAccount(User):
    """An admin, with the MFA state of their own admin-portal enrollment."""


class AdminPage(BaseModel):
    items: list[AdminAccount]
    next_cursor: str | None


AdminFilterDep = Annotated[PrincipalFilter, Depends(principal_filter("admin"))]


@router.get("/admins")
async def list_admins(runtime: RuntimeDep, flt: AdminFilterDep, paging: PageRequestDep, caller: Reader,
                      consistent_with: ConsistentWith = None) -> AdminPage:
    items, next_cursor = await principals_page(runtime, flt, paging, consistent_with, AdminAccount)
    return AdminPage(items=items, next_cursor=next_cursor)


@router.get("/admins/{admin_id}")
async def get_admin(admin_id: uuid.UUID, runtime: RuntimeDep, caller: Reader,
                    consistent_with: ConsistentWith = None) -> AdminAccount:
    return await one_principal(runtime, "admin", admin_id, consistent_with, AdminAccount)


@router.delete("/admins/{admin_id}")
async def delete_admin(admin_id: uuid.UUID, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep,
                       idempotency_key: IdempotencyKey = None) -> Receipt:
    """Deletes an admin and everything of theirs: sign-in credentials, admin-portal enrollment, TOTP key
    and recovery codes, reminder timers, sessions. The last admin cannot be deleted."""
    deleted = receipt(await forward.send("identity", "DELETE", f"/admins/{admin_id}", caller.actor, None,
                                         idempotency_key))
    # The projector ends them too, once the deletion reaches it; the caller must not wait for that.
    async with runtime.pool.acquire() as conn, conn.transaction():
        await end_sessions_before(conn, {admin_id: runtime.clock.now()})
    return deleted


@router.post("/api-keys", status_code=201)
async def create_api_key(body: NewApiKey, caller: Admin, forward: ForwarderDep) -> IssuedApiKey:
    answer = await forward.send("identity", "POST", "/api-keys", caller.actor, body.model_dump())
    return IssuedApiKey(**receipt(answer).model_dump(), key_id=answer["key_id"], role=answer["role"],
                        key=answer["key"])


@router.delete("/api-keys/{key_id}")
async def revoke_api_key(key_id: uuid.UUID, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.send("identity", "DELETE", f"/api-keys/{key_id}", caller.actor))
