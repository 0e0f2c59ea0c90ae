"""Admins (separate principals with their own admin-portal enrollment) and API credentials."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.identity_events import ApiRole
from mfaplane_gateway.api import IdempotencyKey, NewPrincipal
from mfaplane_gateway.auth import Admin
from mfaplane_gateway.forwarding import ForwarderDep
from mfaplane_gateway.receipts import Receipt, receipt

router = APIRouter(prefix="/v1", tags=["admins and API keys"])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewApiKey(Body):
    role: ApiRole
    name: str = Field(min_length=1, max_length=200)


class IssuedApiKey(Receipt):
    key_id: uuid.UUID
    role: ApiRole
    key: str = Field(description="shown once; only its hash is kept")


@router.post("/admins", status_code=201)
async def create_admin(body: NewPrincipal, caller: Admin, forward: ForwarderDep,
                       idempotency_key: IdempotencyKey = None) -> Receipt:
    return receipt(await forward.send("identity", "POST", "/admins", caller.actor, body.model_dump(), idempotency_key))


@router.post("/api-keys", status_code=201)
async def create_api_key(body: NewApiKey, caller: Admin, forward: ForwarderDep) -> IssuedApiKey:
    answer = await forward.send("identity", "POST", "/api-keys", caller.actor, body.model_dump())
    return IssuedApiKey(**receipt(answer).model_dump(), key_id=answer["key_id"], role=answer["role"],
                        key=answer["key"])


@router.delete("/api-keys/{key_id}")
async def revoke_api_key(key_id: uuid.UUID, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.send("identity", "DELETE", f"/api-keys/{key_id}", caller.actor))
