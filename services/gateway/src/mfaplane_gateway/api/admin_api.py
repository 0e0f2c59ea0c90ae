"""Admins (separate principals with their own admin-portal enrollment) and API credentials."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api
from mfaplane_contracts.identity_api import KeyStatus, ListedApiKey, NewApiKey
from mfaplane_contracts.identity_events import ApiRole
from mfaplane_gateway.api.api_versions import VERSIONED_RESPONSE, ApiVersion, deprecated_shape
from mfaplane_gateway.api.paging import decode_cursor, page_of
from mfaplane_gateway.api.principals import NewPrincipal, Principal, one_principal, principal_filter, principals_page
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import ConsistentWith, Cursor, IdempotencyKey, Limit, PageRequestDep
from mfaplane_gateway.edge.auth import Admin, Reader, StepUp
from mfaplane_gateway.edge.forwarding import ForwarderDep
from mfaplane_gateway.edge.sessions import end_now
from mfaplane_gateway.read_models.principals_query import PrincipalFilter

router = APIRouter(prefix="/v1", tags=["admins and API keys"])


class IssuedApiKey(Receipt):
    key_id: uuid.UUID
    role: ApiRole
    system_id: uuid.UUID | None
    expires_at: datetime
    key: str = Field(description="shown once; only its hash is kept")


@router.post("/admins", status_code=201)
async def create_admin(body: NewPrincipal, caller: StepUp, forward: ForwarderDep,
                       idempotency_key: IdempotencyKey = None) -> Receipt:
    """Only from an admin session whose code was checked in the last few minutes: otherwise an API key
    could make an admin of its own, set up MFA on it and so mint keys. The first admin comes from the
    operator command `create-admin`."""
    return receipt(await forward.call(identity_api.CREATE_ADMIN, caller.actor,
                                      identity_api.NewPrincipal(**body.model_dump()), idempotency_key=idempotency_key))


class AdminAccount(Principal):
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
    deleted = receipt(await forward.call(identity_api.DELETE_ADMIN, caller.actor, idempotency_key=idempotency_key,
                                         admin_id=admin_id))
    await end_now(runtime, admin_id)  # the projector ends them too, once the deletion reaches it
    return deleted


@router.post("/api-keys", status_code=201, summary="Create an API key")
async def create_api_key(body: NewApiKey, caller: StepUp, forward: ForwarderDep) -> IssuedApiKey:
    """Only from an admin session whose code was checked in the last few minutes (POST
    /v1/admin-portal/step-up): a stolen API key or an unattended console cannot mint lasting access. A
    `system_agent` key is bound to a macOS or Linux system, an `sso_client` key to an `sso_application`
    (409 `wrong_system_kind` otherwise)."""
    answer = await forward.call(identity_api.CREATE_API_KEY, caller.actor, body)
    return IssuedApiKey(**receipt(answer).model_dump(), key_id=answer.key_id, role=answer.role,
                        system_id=answer.system_id, expires_at=answer.expires_at, key=answer.key)


class ApiKeyPage(BaseModel):
    items: list[ListedApiKey]
    next_cursor: str | None


@router.get("/api-keys", response_model=ApiKeyPage | list[ListedApiKey], responses=VERSIONED_RESPONSE,
             summary="List API keys")
async def list_api_keys(caller: Admin, forward: ForwarderDep, response: Response, api_version: ApiVersion = None,
                        status: KeyStatus | None = None, limit: Limit = 50,
                        cursor: Cursor = None) -> ApiKeyPage | list[ListedApiKey]:
    """API keys (or those of one `status`), newest first; never the keys themselves. With `API-Version`, a page;
    without, every one as a bare array (deprecated: ignores `limit` and `cursor`)."""
    listed = await forward.call(identity_api.LIST_API_KEYS, caller.actor, query={"status": status} if status else None)
    keys = sorted(listed, key=lambda key: _newest_first(key.created_at, key.key_id))
    if api_version is None:
        deprecated_shape(response)
        return keys
    if cursor:
        after = _newest_first(*decode_cursor(cursor, KEYS_LISTING, "timestamptz"))
        keys = [key for key in keys if _newest_first(key.created_at, key.key_id) > after]
    items, next_cursor = page_of(keys, limit, KEYS_LISTING, lambda key: (key.created_at or UNRECORDED, key.key_id))
    return ApiKeyPage(items=items, next_cursor=next_cursor)


KEYS_LISTING = "api-keys"  # what a cursor of the API keys list is good for
UNRECORDED = datetime.min.replace(tzinfo=UTC)  # when keys made before it was recorded were made, for their order


def _newest_first(created_at: datetime | None, key_id: uuid.UUID) -> tuple[timedelta, uuid.UUID]:
    """The list's order: newest first, keys made before their creation was recorded last, then by id."""
    return UNRECORDED - (created_at or UNRECORDED), key_id


@router.delete("/api-keys/{key_id}", summary="Revoke an API key")
async def revoke_api_key(key_id: uuid.UUID, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.call(identity_api.REVOKE_API_KEY, caller.actor, key_id=key_id))
