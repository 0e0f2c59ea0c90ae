"""Protected resources (rule 10): systems and SSO applications, their MFA switch, and the decision
endpoint that system agents (a PAM module, a macOS login agent, an SSO application) call.

On an MFA-enabled resource a user who has completed setup must give a code; one who has not is
not asked. A resource with MFA disabled never asks.
"""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.commands import CODE_PATTERN
from mfaplane_contracts.identity_events import ResourceKind
from mfaplane_contracts.text import DisplayName
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import RuntimeDep
from mfaplane_gateway import read_your_writes
from mfaplane_gateway.api import ConsistentWith
from mfaplane_gateway.auth import Admin, Reader, SystemAgent
from mfaplane_gateway.forwarding import ForwarderDep
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


class BulkResult(BaseModel):
    changed: list[uuid.UUID]
    failed: dict[uuid.UUID, str]


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


@router.get("")
async def list_resources(runtime: RuntimeDep, _: Reader, kind: ResourceKind | None = None,
                         mfa_enabled: bool | None = None, consistent_with: ConsistentWith = None) -> list[Resource]:
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    rows = await runtime.pool.fetch(
        f"SELECT system_id, name, kind, mfa_enabled FROM {LIVE_TABLES['resources']} WHERE name IS NOT NULL "
        "AND ($1::text IS NULL OR kind = $1) AND ($2::boolean IS NULL OR mfa_enabled = $2) ORDER BY lower(name)",
        kind, mfa_enabled,
    )
    return [Resource(id=r["system_id"], name=r["name"], kind=r["kind"], mfa_enabled=r["mfa_enabled"]) for r in rows]


@router.put("/{system_id}/mfa")
async def switch_mfa(system_id: uuid.UUID, body: MFASwitch, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.send("identity", "PUT", f"/systems/{system_id}/mfa", caller.actor, body.model_dump()))


@router.post("/mfa/bulk")
async def switch_mfa_in_bulk(body: BulkMFASwitch, caller: Admin, forward: ForwarderDep) -> BulkResult:
    result = BulkResult(changed=[], failed={})
    for system_id in dict.fromkeys(body.system_ids):
        try:
            await forward.send("identity", "PUT", f"/systems/{system_id}/mfa", caller.actor, {"enabled": body.enabled})
            result.changed.append(system_id)
        except Rejected as refused:
            if refused.status == 503:
                raise
            result.failed[system_id] = refused.code
    return result


@router.post("/{system_id}/authorize")
async def authorize(system_id: uuid.UUID, body: AuthorizeRequest, _: SystemAgent, runtime: RuntimeDep,
                    forward: ForwarderDep) -> Decision:
    enabled = await runtime.pool.fetchval(f"SELECT mfa_enabled FROM {LIVE_TABLES['resources']} WHERE system_id = $1",
                                          system_id)
    if enabled is None:
        raise Rejected("system_not_found", "No such system or application.", 404)
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
