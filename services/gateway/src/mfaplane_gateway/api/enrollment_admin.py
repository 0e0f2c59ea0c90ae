"""Admin operations on one principal's enrollment: require, remove the requirement, extend, reset.

The same four operations exist for users (scope user_portal) and for admins (their separate
admin_portal enrollment, rule 11); one factory builds both sets of routes. Resetting an admin's MFA,
or removing its requirement, is a step towards taking that admin over (set up one's own key on it),
so those two need a stepped-up admin session, as minting an API key does.

A reset or a new requirement ends the principal's sessions: the projector does it when the event
reaches it, and the route at once, so a compromised session does not live on while the projector
catches up.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import commands as c
from mfaplane_contracts import identity_api, mfa_api
from mfaplane_contracts.endpoints import Endpoint
from mfaplane_contracts.mfa_events import PRINCIPAL_KINDS, Scope, enrollment_days
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import IdempotencyKey
from mfaplane_gateway.edge.auth import Admin, Caller, Roles, SteppedUp
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.sessions import end_now


class EnrollmentPeriod(c.Period):
    # strict: a whole number of days, never true, 7.0 or "7" (rule 1: anything else is refused)
    enrollment_days: int = enrollment_days(default=c.DEFAULT_ENROLLMENT_DAYS, strict=True,
                                           description="days, counted from now, to set up MFA (1 to 365)")


class RequirePeriod(c.RequirePeriod):
    enrollment_days: int | None = enrollment_days(
        default=c.DEFAULT_ENROLLMENT_DAYS, strict=True,
        description="days to set up MFA (1 to 365); null requires setup at the next sign-in",
    )


async def send_enrollment_command(forward: Forwarder, actor: str, scope: Scope, principal_id: uuid.UUID,
                                  endpoint: Endpoint[c.CommandReceipt], body: BaseModel | None = None,
                                  idempotency_key: str | None = None) -> Receipt:
    """Forwards the command to mfa once identity knows the principal (a 404 problem otherwise): mfa
    knows no principals and would keep an enrollment, and queue its mails, for any id."""
    await forward.call(identity_api.PRINCIPAL_EXISTS, actor, kind=PRINCIPAL_KINDS[scope], principal_id=principal_id)
    answer = await forward.call(endpoint, actor, body, idempotency_key=idempotency_key, scope=scope,
                                principal_id=principal_id)
    return receipt(answer, principal_id)


def enrollment_router(collection: str, scope: Scope, tag: str, takeover: Roles) -> APIRouter:
    """`takeover`: who may reset the MFA or remove the requirement."""
    router = APIRouter(prefix=f"/v1/{collection}/{{principal_id}}/mfa", tags=[tag])

    @router.post("/require", summary="Require MFA")
    async def require_mfa(principal_id: uuid.UUID, body: RequirePeriod, caller: Admin, runtime: RuntimeDep,
                          forward: ForwarderDep, idempotency_key: IdempotencyKey = None) -> Receipt:
        required = await send_enrollment_command(forward, caller.actor, scope, principal_id, mfa_api.REQUIRE,
                                                 c.RequirePeriod(enrollment_days=body.enrollment_days),
                                                 idempotency_key)
        if required.event_ids:
            await end_now(runtime, principal_id)
        return required

    @router.post("/remove-requirement", summary="Remove the MFA requirement")
    async def remove_mfa_requirement(principal_id: uuid.UUID, forward: ForwarderDep,
                                     idempotency_key: IdempotencyKey = None,
                                     caller: Caller = Depends(takeover)) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id,
                                             mfa_api.REMOVE_REQUIREMENT, idempotency_key=idempotency_key)

    @router.post("/extend", summary="Extend the enrollment period")
    async def extend_enrollment(principal_id: uuid.UUID, body: EnrollmentPeriod, caller: Admin,
                                forward: ForwarderDep, idempotency_key: IdempotencyKey = None) -> Receipt:
        return await send_enrollment_command(forward, caller.actor, scope, principal_id, mfa_api.EXTEND,
                                             c.Period(enrollment_days=body.enrollment_days), idempotency_key)

    @router.post("/reset", summary="Reset MFA")
    async def reset_mfa(principal_id: uuid.UUID, body: EnrollmentPeriod, runtime: RuntimeDep, forward: ForwarderDep,
                        idempotency_key: IdempotencyKey = None, caller: Caller = Depends(takeover)) -> Receipt:
        reset = await send_enrollment_command(forward, caller.actor, scope, principal_id, mfa_api.RESET,
                                              c.Period(enrollment_days=body.enrollment_days), idempotency_key)
        if reset.event_ids:
            await end_now(runtime, principal_id)
        return reset

    return router


users = enrollment_router("users", "user_portal", "user MFA", Roles("admin"))
admins = enrollment_router("admins", "admin_portal", "admin MFA", SteppedUp())
