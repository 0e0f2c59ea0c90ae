"""An admin ends every session of a user or an admin: a lost laptop, a suspected takeover.

Identity records it as an event (UserSessionsEnded / AdminSessionsEnded), so the audit trail shows
who did it and when; the projector ends the sessions when the event reaches it, and this route ends
them at once as well, so the caller does not wait for the projection. Sign-in challenges issued
before it are refused too: a password typed before the sessions were ended opens no new one.
"""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter

from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import identity_api
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import IdempotencyKey
from mfaplane_gateway.edge.auth import Admin, Caller
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.sessions import end_now

router = APIRouter(prefix="/v1")


async def _end_sessions(kind: Literal["user", "admin"], principal_id: uuid.UUID, caller: Caller, runtime: Runtime,
                        forward: Forwarder, idempotency_key: str | None) -> Receipt:
    ended = receipt(await forward.call(identity_api.END_SESSIONS, caller.actor, idempotency_key=idempotency_key,
                                       kind=kind, principal_id=principal_id))
    await end_now(runtime, principal_id)
    return ended


@router.delete("/users/{user_id}/sessions", tags=["users"])
async def end_user_sessions(user_id: uuid.UUID, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep,
                            idempotency_key: IdempotencyKey = None) -> Receipt:
    """Ends every session of the user in the user portal."""
    return await _end_sessions("user", user_id, caller, runtime, forward, idempotency_key)


@router.delete("/admins/{admin_id}/sessions", tags=["admins and API keys"])
async def end_admin_sessions(admin_id: uuid.UUID, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep,
                             idempotency_key: IdempotencyKey = None) -> Receipt:
    """Ends every session of the admin in the admin console (the caller's own included, if it is theirs)."""
    return await _end_sessions("admin", admin_id, caller, runtime, forward, idempotency_key)
