"""API keys and roles: every /v1 endpoint declares which roles may call it.

Callers present `Authorization: Bearer <token>`. A token is either an API key (`mfp_...`) with a
role, or the session token of an admin signed in to the admin portal, which acts with the `admin`
role and is recorded as that admin. While ADMIN_MFA_REQUIRED is on, an admin session counts only if
a code was checked for it: a session opened with a password alone (before the switch was turned on)
is refused. What turns into lasting admin access (minting an API key, making an admin, resetting
an admin's MFA) needs more: an admin session whose code is recent (`StepUp`).

Keys are checked by the identity service, which alone holds their hashes. A verified key is
remembered for a few seconds (keyed by a hash of the key, never the key) so a busy portal does not
cost a round trip per request; a revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from mfaplane_contracts import identity_api
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.forwarding import Forwarder

CACHE_SECONDS = 5.0
PREFIX = "mfp_"  # the API key format of the identity service
ROLES = ("admin", "auditor", "portal", "system_agent", "sso_client")  # sso_client: no /v1 endpoint (sso/)
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer mfp_...`")


@dataclass(frozen=True)
class Caller:
    role: str
    actor: str  # recorded on every event the call causes: api_key:<id> or admin:<id>
    mfa_verified_at: datetime | None = None  # an admin session's latest code; None for an API key
    system_id: uuid.UUID | None = None  # the one system a system agent's key decides for


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, Caller]] = {}

    async def caller(self, forward: Forwarder, key: str) -> Caller:
        digest = hashlib.sha256(key.encode()).digest()
        entry = self._entries.get(digest)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        answer = await forward.call(identity_api.VERIFY_API_KEY, "gateway:auth", identity_api.KeyCheck(key=key))
        caller = Caller(answer.role, f"api_key:{answer.key_id}", system_id=answer.system_id)
        self._entries[digest] = (time.monotonic() + CACHE_SECONDS, caller)
        return caller


class Roles:
    """A dependency admitting callers whose key has one of `roles` (introspected by the role matrix test)."""

    def __init__(self, *roles: str) -> None:
        assert set(roles) <= set(ROLES), roles
        self.roles = roles

    async def __call__(self, request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Rejected("unauthenticated", "An API key is required: Authorization: Bearer <key>.",
                           Refusal.UNAUTHENTICATED)
        token = credentials.credentials
        caller = await (_by_api_key(request, token) if token.startswith(PREFIX) else _by_admin_session(request, token))
        if caller.role not in self.roles:
            raise Rejected("forbidden", f"This operation needs one of the roles: {', '.join(self.roles)}.",
                           Refusal.FORBIDDEN)
        return caller


async def _by_api_key(request: Request, key: str) -> Caller:
    try:
        return await request.app.state.key_cache.caller(request.app.state.forwarder, key)
    except (Rejected, ValidationError):  # a key no key can be (too long) is as unknown as a wrong one
        raise Rejected("unauthenticated", "The API key is unknown or revoked.", Refusal.UNAUTHENTICATED) from None


async def _by_admin_session(request: Request, token: str) -> Caller:
    runtime = request.app.state.runtime
    try:
        session = await request.app.state.tokens.session(runtime.pool, token, "admin", runtime.clock.now())
    except Rejected as refused:
        if refused.code == "admin_mfa_required":
            raise
        raise Rejected("unauthenticated", "The API key or admin session is invalid or expired.",
                       Refusal.UNAUTHENTICATED) from None
    return Caller("admin", f"admin:{session['principal_id']}", session["mfa_verified_at"])


class SteppedUp(Roles):
    """Admins, from an admin session whose code was checked within STEP_UP_SECONDS: an API key is not enough."""

    def __init__(self) -> None:
        super().__init__("admin")

    async def __call__(self, request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
        caller = await super().__call__(request, credentials)
        runtime = request.app.state.runtime
        window = timedelta(seconds=runtime.settings.step_up_seconds)
        if caller.mfa_verified_at is None or caller.mfa_verified_at < runtime.clock.now() - window:
            raise Rejected("step_up_required", "This needs an admin session verified with a code in the last "
                           f"{window.seconds // 60} minutes: POST /v1/admin-portal/step-up, then retry.",
                           Refusal.FORBIDDEN)
        return caller


Admin = Annotated[Caller, Depends(Roles("admin"))]
Reader = Annotated[Caller, Depends(Roles("admin", "auditor"))]
Portal = Annotated[Caller, Depends(Roles("portal"))]
SystemAgent = Annotated[Caller, Depends(Roles("system_agent"))]
StepUp = Annotated[Caller, Depends(SteppedUp())]
