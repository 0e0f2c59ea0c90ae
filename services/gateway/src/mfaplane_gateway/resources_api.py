"""Protected resources (rule 10): systems and SSO applications, their MFA switch, and the decision
endpoint that system agents (a PAM module, a macOS login agent, an SSO application) call.

On an MFA-enabled resource a user who has completed setup must give a code; one who has not is
not asked. A resource with MFA disabled never asks.
"""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.commands import CODE_PATTERN
from mfaplane_contracts.identity_events import ResourceKind
from mfaplane_contracts.text import DisplayName
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import RuntimeDep
from mfaplane_gateway import read_your_writes
from mfaplane_gateway.api import ConsistentWith, Cursor, Limit
from mfaplane_gateway.api_versions import VERSIONED_RESPONSE, ApiVersion, deprecated_shape
from mfaplane_gateway.auth import Admin, Reader, SystemAgent
from mfaplane_gateway.forwarding import ForwarderDep
from mfaplane_gateway.paging import decode_cursor, page_of
from mfaplane_gateway.read_models import LIVE_TABLES
from mfaplane_gateway.receipts import Receipt, receipt

router = APIRouter(prefix="/v1/systems", tags=["systems and applications"])
AGENT_ACTOR = "gateway:system-agent"
MAX_BULK = 1000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewResource(Body):
    name: DisplayName
    kind: ResourceKind


class MFASwitch(Body):
    enabled: bool


class BulkMFASwitch(MFASwitch):
    system_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_BULK)


class Resource(BaseModel):
    id: uuid.UUID
    name: str
    kind: ResourceKind
    mfa_enabled: bool


class ResourcePage(BaseModel):
    items: list[Resource]
    next_cursor: str | None


class BulkResult(BaseModel):
    changed: list[uuid.UUID] = Field(description="switched by this request")
    unchanged: list[uuid.UUID] = Field(description="already as asked; nothing was written for them")
    failed: dict[uuid.UUID, str] = Field(description="refused, with the problem code")
    consistency_token: str = Field(description="one token for every system above: pass it as ?consistent_with= "
                                               "to read them back (for a day; after that it waits for nothing)")


class AuthorizeRequest(Body):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=256)
    code: str | None = Field(default=None, min_length=6, max_length=32, pattern=CODE_PATTERN)


class Decision(BaseModel):
    decision: Literal["allow", "code_required", "deny"]
    reason: str


@router.post("", status_code=201)
async def register(body: NewResource, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.send("identity", "POST", "/systems", caller.actor, body.model_dump()))


@router.get("", response_model=ResourcePage | list[Resource], responses=VERSIONED_RESPONSE)
async def list_resources(runtime: RuntimeDep, _: Reader, response: Response, api_version: ApiVersion = None,
                         kind: ResourceKind | None = None, mfa_enabled: bool | None = None, limit: Limit = 50,
                         cursor: Cursor = None, consistent_with: ConsistentWith = None) -> ResourcePage | list[Resource]:
    """By name. With `API-Version`, a page; without, every one as a bare array (deprecated: ignores `limit` and
    `cursor`)."""
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    if api_version is None:
        deprecated_shape(response)
        return [_resource(row) for row in await _resources(runtime.pool, kind, mfa_enabled)]
    rows, next_cursor = page_of(await _resources(runtime.pool, kind, mfa_enabled, limit + 1, cursor), limit, LISTING,
                                lambda row: (row["sort_value"], row["system_id"]))
    return ResourcePage(items=[_resource(row) for row in rows], next_cursor=next_cursor)


LISTING = "systems"  # what a cursor of the systems list is good for


async def _resources(pool: asyncpg.Pool, kind: str | None, mfa_enabled: bool | None, limit: int | None = None,
                     cursor: str | None = None) -> list[asyncpg.Record]:
    params: list = [kind, mfa_enabled, limit]
    after = ""
    if cursor:
        params += decode_cursor(cursor, LISTING, "text")
        after = "AND (lower(name), system_id) > ($4, $5) "
    return await pool.fetch(
        f"SELECT system_id, name, kind, mfa_enabled, lower(name) AS sort_value FROM {LIVE_TABLES['resources']} "
        f"WHERE name IS NOT NULL AND ($1::text IS NULL OR kind = $1) AND ($2::boolean IS NULL OR mfa_enabled = $2) "
        f"{after}ORDER BY lower(name), system_id LIMIT $3", *params,
    )


def _resource(row: asyncpg.Record) -> Resource:
    return Resource(id=row["system_id"], name=row["name"], kind=row["kind"], mfa_enabled=row["mfa_enabled"])


@router.put("/{system_id}/mfa")
async def switch_mfa(system_id: uuid.UUID, body: MFASwitch, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.send("identity", "PUT", f"/systems/{system_id}/mfa", caller.actor, body.model_dump()))


@router.post("/mfa/bulk")
async def switch_mfa_in_bulk(body: BulkMFASwitch, caller: Admin, runtime: RuntimeDep,
                             forward: ForwarderDep) -> BulkResult:
    """Switches each system on its own: one refused leaves the others switched."""
    bulk_id = uuid.uuid4()
    result = BulkResult(changed=[], unchanged=[], failed={}, consistency_token=read_your_writes.bulk_token(bulk_id))
    versions: list[tuple[str, int]] = []
    for system_id in dict.fromkeys(body.system_ids):
        try:
            answer = await forward.send("identity", "PUT", f"/systems/{system_id}/mfa", caller.actor,
                                        {"enabled": body.enabled})
        except Rejected as refused:
            if refused.status == 503:
                raise
            result.failed[system_id] = refused.code
            continue
        (result.changed if answer["event_ids"] else result.unchanged).append(system_id)
        versions.append((answer["aggregate_id"], answer["version"]))
    await read_your_writes.record_set(runtime.pool, bulk_id, runtime.clock.now(), versions)
    return result


@router.post("/{system_id}/authorize")
async def authorize(system_id: uuid.UUID, body: AuthorizeRequest, _: SystemAgent, forward: ForwarderDep) -> Decision:
    """Decided on identity's and mfa's current state, never on the gateway's projections: a decision is
    never older than a change any caller was told about, so it needs no consistency token."""
    enabled = (await forward.send("identity", "GET", f"/systems/{system_id}", AGENT_ACTOR))["mfa_enabled"]
    try:
        principal = await forward.send("identity", "POST", "/authenticate", AGENT_ACTOR,
                                       {"kind": "user", "email": body.email, "password": body.password})
    except Rejected as refused:
        if refused.status == 503:
            raise
        return Decision(decision="deny", reason=refused.code)
    if not enabled:
        return Decision(decision="allow", reason="mfa_not_enabled_on_resource")
    path = f"/enrollments/user_portal/{principal['principal_id']}"
    if not (await forward.send("mfa", "GET", path, AGENT_ACTOR))["set_up"]:
        return Decision(decision="allow", reason="mfa_not_set_up")
    if body.code is None:
        return Decision(decision="code_required", reason="mfa_set_up")
    try:
        await forward.send("mfa", "POST", f"{path}/verify", f"user:{principal['principal_id']}", {"code": body.code})
    except Rejected as refused:
        if refused.status == 503:
            raise
        return Decision(decision="deny", reason=refused.code)
    return Decision(decision="allow", reason="code_verified")
