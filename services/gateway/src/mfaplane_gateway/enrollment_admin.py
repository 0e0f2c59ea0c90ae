"""Admin operations on one principal's enrollment: require, remove the requirement, extend, reset.

The same four operations exist for users (scope user_portal) and for admins (their separate
admin_portal enrollment, rule 11); one factory builds both sets of routes.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.commands import DEFAULT_ENROLLMENT_DAYS
from mfaplane_contracts.mfa_events import PRINCIPAL_KINDS
from mfaplane_gateway.api import IdempotencyKey
from mfaplane_gateway.auth import Admin
from mfaplane_gateway.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.receipts import Receipt, receipt


class EnrollmentPeriod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # strict: a whole number of days, never true, 7.0 or "7" (rule 1: anything else is refused)
    enrollment_days: int = Field(default=DEFAULT_ENROLLMENT_DAYS, ge=1, le=365, strict=True,
                                 description="days, counted from now, to set up MFA (1 to 365)")


class RequirePeriod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enrollment_days: int | None = Field(
        default=DEFAULT_ENROLLMENT_DAYS, ge=1, le=365, strict=True,
        description="days to set up MFA (1 to 365); null requires setup at the next sign-in",
    )


async def send_enrollment_command(forward: Forwarder, actor: str, scope: str, principal_id: uuid.UUID,
                                  action: str, body: dict, idempotency_key: str | None = None) -> Receipt:
    """Forwards the command to mfa once identity knows the principal (a 404 problem otherwise): mfa
    knows no principals and would keep an enrollment, and queue its mails, for any id."""
    await forward.send("identity", "GET", f"/principals/{PRINCIPAL_KINDS[scope]}/{principal_id}", actor)
    path = enrollment_path(scope, principal_id, action)
    return receipt(await forward.send("mfa", "POST", path, actor, body, idempotency_key))


def enrollment_path(scope: str, principal_id: uuid.UUID, action: str) -> str:
    """The mfa service's route of an enrollment command (part of each forwarded command's id)."""
    return f"/enrollments/{scope}/{principal_id}/{action}"


def enrollment_router(collection: str, scope: str, tag: str) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{collection}/{{principal_id}}/mfa", tags=[tag])

    @router.post("/require")
    async def require_mfa(principal_id: uuid.UUID, body: RequirePeriod, caller: Admin, forward: ForwarderDep,
                          idempotency_key: IdempotencyKey = None) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id, "require", body.model_dump(),
                                             idempotency_key)

    @router.post("/remove-requirement")
    async def remove_mfa_requirement(principal_id: uuid.UUID, caller: Admin, forward: ForwarderDep,
                                     idempotency_key: IdempotencyKey = None) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id, "remove-requirement", {},
                                             idempotency_key)

    @router.post("/extend")
    async def extend_enrollment(principal_id: uuid.UUID, body: EnrollmentPeriod, caller: Admin,
                                forward: ForwarderDep, idempotency_key: IdempotencyKey = None) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id, "extend", body.model_dump(),
                                             idempotency_key)

    @router.post("/reset")
    async def reset_mfa(principal_id: uuid.UUID, body: EnrollmentPeriod, caller: Admin, forward: ForwarderDep,
                        idempotency_key: IdempotencyKey = None) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id, "reset", body.model_dump(),
                                             idempotency_key)

    return router


users = enrollment_router("users", "user_portal", "user MFA")
admins = enrollment_router("admins", "admin_portal", "admin MFA")
