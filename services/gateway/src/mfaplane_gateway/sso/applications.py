"""An SSO application as the identity provider sees it: its id (the OpenID Connect client id), its MFA
switch and its sign-in settings, read from identity's current state, never from a projection, so that
a redirect URI removed or an application deleted is refused at once.

An application's client secret is an API key of the `sso_client` role bound to it: identity keeps only
its hash, revokes and expires it, and lists it. That role calls nothing of the /v1 API: a client secret,
which every relying party's configuration holds, cannot check passwords or codes at the decision endpoint.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError

from mfaplane_contracts import identity_api
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.forwarding import Forwarder

ACTOR = "gateway:sso"
SCOPES = ("openid", "profile", "email")


@dataclass
class Application:
    """Also authlib's client (ClientMixin's methods), for the one request it was read for."""

    id: uuid.UUID
    name: str
    mfa_enabled: bool
    protocol: str
    redirect_uris: tuple[str, ...] = ()
    entity_id: str | None = None
    acs_urls: tuple[str, ...] = ()
    verified_secret: str | None = field(default=None, repr=False)  # the secret presented, once identity accepted it

    def returns_to(self, url: str) -> bool:
        """Whether signed-in users may be sent back to `url` (a redirect URI, an ACS URL): registered, byte for byte."""
        return url in (self.redirect_uris if self.protocol == "oidc" else self.acs_urls)

    def get_client_id(self) -> str:
        return str(self.id)

    def get_default_redirect_uri(self) -> None:
        return None  # every request names its redirect URI, which must be one registered, byte for byte

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return self.protocol == "oidc" and self.returns_to(redirect_uri)

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_client_secret(self, client_secret: str) -> bool:
        return self.verified_secret is not None and hmac.compare_digest(client_secret, self.verified_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


async def application(forward: Forwarder, application_id: str | uuid.UUID, protocol: str) -> Application | None:
    """The live SSO application with this id signing in with `protocol`; None for any other id."""
    try:
        state = await forward.call(identity_api.SYSTEM_STATE, ACTOR, system_id=uuid.UUID(str(application_id)))
    except ValueError:
        return None
    except Rejected as refused:
        if refused.kind == Refusal.NOT_FOUND:
            return None
        raise
    settings = state.sign_in
    if state.kind != "sso_application" or not settings or settings.protocol != protocol:
        return None
    return Application(state.system_id, state.name, state.mfa_enabled, protocol, tuple(settings.redirect_uris),
                       settings.entity_id, tuple(settings.acs_urls))


async def verify_secret(forward: Forwarder, client: Application, secret: str) -> None:
    """Remembers `secret` on `client` if it is a live key bound to this application."""
    try:
        key = await forward.call(identity_api.VERIFY_API_KEY, ACTOR, identity_api.KeyCheck(key=secret))
    except (Rejected, ValidationError):  # unknown, or no key at all (too long)
        return
    if key.role == "sso_client" and key.system_id == client.id:
        client.verified_secret = secret
