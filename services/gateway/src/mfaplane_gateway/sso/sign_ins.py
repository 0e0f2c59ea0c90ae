"""A user's sign-in to an SSO application through the user portal's sign-in steps, and how it ends.

The portal's steps (sign_in.py) carry the pending sign-in's token. What the application asks of the
user follows rule 10 and the user portal's rules together: on an application with MFA on, a user
with MFA set up gives a code, one in an enrollment period gets the setup prompt, one who must set up
now sets up; on one with MFA off, the password is enough. A locked-out user (enrollment expired) is
refused either way, with the reason. Each ending is an ApplicationSignInDecided on the user's history.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from mfaplane_chassis.service import Runtime
from mfaplane_contracts import mfa_api, mfa_events
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.forwarding import Forwarder
from mfaplane_gateway.read_models.registry import LIVE_TABLES
from mfaplane_gateway.sso import oidc, pending, saml
from mfaplane_gateway.sso.applications import ACTOR, application
from mfaplane_gateway.sso.config import SignInProof, SSOConfig, not_configured
from mfaplane_gateway.sso.pending import ApplicationSignIn

Finisher = Callable[[Runtime, ApplicationSignIn, SignInProof], Awaitable[str]]
FINISHERS: dict[str, Finisher] = {"oidc": oidc.authorization_redirect, "saml": saml.response_page}


async def resume(runtime: Runtime, sso: SSOConfig | None, forward: Forwarder, token: str) -> ApplicationSignIn:
    """The sign-in `token` names, still waiting for its user, to an application that still signs in so."""
    if sso is None:
        raise not_configured()
    waiting = await pending.find(runtime.pool, token, runtime.clock.now())
    found = await application(forward, waiting.application_id, waiting.protocol)
    if found is None:
        raise Rejected("application_not_found", "The application this sign-in is for no longer signs users in "
                       "here: ask its administrator.", Refusal.NOT_FOUND)
    if not found.returns_to(waiting.request["return_to"]):
        raise Rejected("application_sign_in_changed", "The application's sign-in settings changed since this "
                       "sign-in began: go back to the application and sign in again.")
    return ApplicationSignIn(token, waiting, found, sso)


def status_for(sign_in: ApplicationSignIn | None, status: str, reason: str | None) -> tuple[str, str | None]:
    """The enrollment status the portal's sign-in acts on, for a sign-in to `sign_in`'s application: MFA off asks
    nothing of anyone not locked out, MFA on asks a code of everyone with MFA set up (required or not)."""
    if sign_in is None or status == "expired":
        return status, reason
    if not sign_in.mfa_required:
        return "none", None
    return ("active", reason) if status == "configured_not_required" else (status, reason)


async def finish(runtime: Runtime, sign_in: ApplicationSignIn, forward: Forwarder, principal_id: uuid.UUID,
                 email: str, mfa_used: bool, source: str | None) -> str:
    """Where the browser goes back to the application, signed in; once per pending sign-in."""
    if sign_in.mfa_requested and not mfa_used:
        await record(forward, principal_id, sign_in, "refused", "mfa_requested_by_application", False, source)
        raise Rejected("mfa_requested_by_application", "This application asks for multi-factor authentication, "
                       "which you have not set up yet: set it up in the user portal, then sign in again.",
                       Refusal.FORBIDDEN)
    await pending.finish(runtime.pool, sign_in.token, runtime.clock.now())
    name = await runtime.pool.fetchval(f"SELECT name FROM {LIVE_TABLES['principals']} WHERE principal_id = $1",
                                       principal_id)
    proof = SignInProof.now(str(principal_id), email, name or email, mfa_used)
    finisher = FINISHERS[sign_in.pending.protocol]
    redirect = await finisher(runtime, sign_in, proof)
    await record(forward, principal_id, sign_in, "signed_in", _reason(sign_in, mfa_used), mfa_used, source)
    return redirect


def _reason(sign_in: ApplicationSignIn, mfa_used: bool) -> str:
    if mfa_used:
        return "code_verified"
    return "mfa_not_set_up" if sign_in.mfa_required else "mfa_not_enabled_on_application"


async def record(forward: Forwarder, principal_id: uuid.UUID, sign_in: ApplicationSignIn, outcome: str,
                 reason: str, mfa_used: bool, source: str | None) -> None:
    ended = mfa_events.ApplicationSignIn(system_id=sign_in.application.id, protocol=sign_in.pending.protocol,
                                         outcome=outcome, reason=reason, mfa_used=mfa_used, source=source)
    await forward.call(mfa_api.RECORD_APPLICATION_SIGN_IN, ACTOR, ended, scope="user_portal", principal_id=principal_id)
