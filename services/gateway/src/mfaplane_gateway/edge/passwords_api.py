"""Passwords (NIST SP 800-63B): changed by their owner in the user portal or the admin console, and
reset through a single-use, expiring link that an admin has mailed to the owner.

A change needs the owner's session, their current password (checked and counted as at sign-in) and,
when they have MFA set up, a code (checked and throttled as at sign-in). It ends every other session
of the owner; the session that made it stays. A reset ends every session, and the owner then signs
in with the new password and, as before, their code.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api, mfa_api, reset_tokens
from mfaplane_contracts.commands import Code, TotpCode
from mfaplane_contracts.identity_api import NewPassword, PasswordCheck
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import Body, IdempotencyKey
from mfaplane_gateway.edge.auth import Admin, Caller, Portal
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.rate_limits import CHALLENGE_LIMIT, RATE_LIMITED_RESPONSE, SIGN_IN_LIMIT, ClientSource
from mfaplane_gateway.edge.sessions import end_other_sessions, end_sessions_before
from mfaplane_gateway.edge.sign_in import TokensDep

Kind = Literal["user", "admin"]
RESET_ACTOR = "gateway:password-reset"  # the holder of a reset link; the event names the reset it used
NEW_PASSWORD = Field(min_length=8, max_length=256, description="8 to 256 characters")


class PasswordChange(Body):
    session: str = Field(min_length=1, max_length=1000)
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = NEW_PASSWORD
    code: Annotated[str, TotpCode] | None = Field(default=None, description="a TOTP or recovery code; needed when "
                                                  "the principal has MFA set up")


class ResetRedemption(Body):
    token: str = Field(min_length=1, max_length=reset_tokens.MAX_LENGTH, description="from the mailed link")
    new_password: str = NEW_PASSWORD


class ResetRequested(Receipt):
    expires_at: datetime = Field(description="until when the mailed link works, once")


def own_password_router(kind: Kind, scope: str, prefix: str, tag: str) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[tag], responses=RATE_LIMITED_RESPONSE)

    @router.post("/password", dependencies=[SIGN_IN_LIMIT])
    async def change_password(body: PasswordChange, source: ClientSource, _: Portal, runtime: RuntimeDep,
                              tokens: TokensDep, forward: ForwarderDep) -> Receipt:
        """Changes the signed-in principal's password; every other session of theirs ends."""
        session = await tokens.session(runtime.pool, body.session, kind, runtime.clock.now())
        principal_id = session["principal_id"]
        if body.new_password == body.current_password:
            raise Rejected("password_unchanged", "The new password must differ from the current one.", Refusal.INVALID)
        owner = f"{kind}:{principal_id}"
        await _check_owner(forward, kind, scope, principal_id, owner, body, source)
        changed = await forward.call(identity_api.SET_PASSWORD, owner, NewPassword(password=body.new_password),
                                     kind=kind, principal_id=principal_id)
        await end_other_sessions(runtime.pool, principal_id, session["session_id"], changed.changed_at)
        return receipt(changed)

    @router.post("/password-reset", dependencies=[CHALLENGE_LIMIT], summary="Set a new password from a reset link")
    async def reset_password(body: ResetRedemption, _: Portal, runtime: RuntimeDep, forward: ForwarderDep) -> Receipt:
        """Sets a new password with the token of a mailed reset link, once; every session of the principal ends."""
        changed = await forward.call(identity_api.REDEEM_PASSWORD_RESET, RESET_ACTOR,
                                     identity_api.ResetRedemption(kind=kind, token=body.token,
                                                                  password=body.new_password))
        # The projector ends them too, once the change reaches it; the new password must not wait for that.
        async with runtime.pool.acquire() as conn, conn.transaction():
            await end_sessions_before(conn, {uuid.UUID(changed.aggregate_id): changed.changed_at})
        return receipt(changed)

    return router


async def _check_owner(forward: Forwarder, kind: Kind, scope: str, principal_id: uuid.UUID, owner: str,
                       body: PasswordChange, source: str) -> None:
    """The current password, then the code if MFA is set up: a wrong password spends no code."""
    mfa_set_up = (await forward.call(mfa_api.VIEW, owner, scope=scope, principal_id=principal_id)).set_up
    if mfa_set_up and body.code is None:
        raise Rejected("code_required", "Your MFA is set up: enter a code from your authenticator app too.",
                       Refusal.UNAUTHENTICATED)
    await forward.call(identity_api.CHECK_PASSWORD, owner, PasswordCheck(password=body.current_password, source=source),
                       kind=kind, principal_id=principal_id)
    if mfa_set_up:
        await forward.call(mfa_api.VERIFY, owner, Code(code=body.code), scope=scope, principal_id=principal_id)


user_portal = own_password_router("user", "user_portal", "/v1/portal", "user portal sign-in")
admin_portal = own_password_router("admin", "admin_portal", "/v1/admin-portal", "admin portal sign-in")
resets = APIRouter(prefix="/v1")


async def _request_reset(kind: Kind, principal_id: uuid.UUID, caller: Caller, forward: Forwarder,
                         idempotency_key: str | None) -> ResetRequested:
    answer = await forward.call(identity_api.REQUEST_PASSWORD_RESET, caller.actor, idempotency_key=idempotency_key,
                                kind=kind, principal_id=principal_id)
    return ResetRequested(**receipt(answer).model_dump(), expires_at=answer.expires_at)


@resets.post("/users/{user_id}/password-reset", status_code=201, tags=["users"],
             summary="Mail a user a password reset link")
async def request_user_reset(user_id: uuid.UUID, caller: Admin, forward: ForwarderDep,
                             idempotency_key: IdempotencyKey = None) -> ResetRequested:
    """Mails the user a link to set a new password in the user portal: it works once, until `expires_at`,
    and a newer request replaces it. The current password keeps working until the link is used."""
    return await _request_reset("user", user_id, caller, forward, idempotency_key)


@resets.post("/admins/{admin_id}/password-reset", status_code=201, tags=["admins and API keys"],
             summary="Mail an admin a password reset link")
async def request_admin_reset(admin_id: uuid.UUID, caller: Admin, forward: ForwarderDep,
                              idempotency_key: IdempotencyKey = None) -> ResetRequested:
    """As for a user, with the link to the admin console."""
    return await _request_reset("admin", admin_id, caller, forward, idempotency_key)
