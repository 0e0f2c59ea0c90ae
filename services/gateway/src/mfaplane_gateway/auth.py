"""API keys and roles: every /v1 endpoint declares which roles may call it.

Keys are checked by the identity service, which alone holds their hashes. A verified key is
remembered for a few seconds (keyed by a hash of the key, never the key) so a busy portal does not
cost a round trip per request; a revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfaplane_eventing.aggregate import Rejected
from mfaplane_gateway.forwarding import Forwarder

CACHE_SECONDS = 5.0
ROLES = ("admin", "auditor", "portal", "system_agent")
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer mfp_...`")


@dataclass(frozen=True)
class Caller:
    key_id: uuid.UUID
    role: str

    @property
    def actor(self) -> str:
        return f"api_key:{self.key_id}"


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, Caller]] = {}

    async def caller(self, forward: Forwarder, key: str) -> Caller:
        digest = hashlib.sha256(key.encode()).digest()
        entry = self._entries.get(digest)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        answer = await forward.send("identity", "POST", "/api-keys/verify", "gateway:auth", {"key": key})
        caller = Caller(uuid.UUID(answer["key_id"]), answer["role"])
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
            raise Rejected("unauthenticated", "An API key is required: Authorization: Bearer <key>.", 401)
        try:
            caller = await request.app.state.key_cache.caller(request.app.state.forwarder, credentials.credentials)
        except Rejected as refused:
            if refused.status == 503:
                raise
            raise Rejected("unauthenticated", "The API key is unknown or revoked.", 401) from None
        if caller.role not in self.roles:
            raise Rejected("forbidden", f"This operation needs one of the roles: {', '.join(self.roles)}.", 403)
        return caller


Admin = Annotated[Caller, Depends(Roles("admin"))]
Reader = Annotated[Caller, Depends(Roles("admin", "auditor"))]
Portal = Annotated[Caller, Depends(Roles("portal"))]
SystemAgent = Annotated[Caller, Depends(Roles("system_agent"))]
