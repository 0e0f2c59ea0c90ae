"""Sign-ins an application asked for and the user has not finished yet.

An application sends the browser to the gateway (an OpenID Connect authorization request, a SAML
AuthnRequest); once the request is checked it is kept here and the browser goes on to the user
portal's sign-in page with a random token naming it. The portal's sign-in steps carry the token, and
the sign-in that ends there goes back to the application once: `finish` marks it, atomically.
Only the token's hash is stored; rows go when they expire (sessions.delete_expired).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.sso.applications import Application
from mfaplane_gateway.sso.config import SSOConfig

LIFETIME = timedelta(minutes=15)  # long enough to set MFA up on the way
RESPONSE_LIFETIME = timedelta(minutes=5)  # a signed SAML response: the assertion's own lifetime


@dataclass(frozen=True)
class PendingSignIn:
    application_id: uuid.UUID
    protocol: str
    request: dict[str, Any]  # what the application asked, as its protocol module needs it again


@dataclass(frozen=True)
class ApplicationSignIn:
    """A pending sign-in taken up again by a sign-in step, with its application as it is now."""

    token: str
    pending: PendingSignIn
    application: Application
    sso: SSOConfig

    @property
    def mfa_requested(self) -> bool:
        """The application's request admits nothing weaker than MFA (SAML's RequestedAuthnContext, OpenID
        Connect's acr_values)."""
        return self.pending.request.get("mfa_requested", False)

    @property
    def mfa_required(self) -> bool:
        """The application's switch, or its request."""
        return self.application.mfa_enabled or self.mfa_requested


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def keep(pool: asyncpg.Pool, pending: PendingSignIn, now: datetime) -> str:
    """Stores the request; the token that names it."""
    token = secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO pending_sign_ins (token_hash, application_id, protocol, request, created_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)", token_hash(token), pending.application_id, pending.protocol,
        json.dumps(pending.request), now, now + LIFETIME)
    return token


async def find(pool: asyncpg.Pool, token: str, now: datetime) -> PendingSignIn:
    row = await pool.fetchrow(
        "SELECT application_id, protocol, request FROM pending_sign_ins WHERE token_hash = $1 AND expires_at > $2 "
        "AND finished_at IS NULL", token_hash(token), now)
    if row is None:
        raise expired()
    return PendingSignIn(row["application_id"], row["protocol"], json.loads(row["request"]))


async def finish(pool: asyncpg.Pool, token: str, now: datetime) -> None:
    """Marks the sign-in finished; refuses one finished already (each goes back to its application once)."""
    done = await pool.fetchval("UPDATE pending_sign_ins SET finished_at = $2 WHERE token_hash = $1 "
                               "AND finished_at IS NULL AND expires_at > $2 RETURNING 1", token_hash(token), now)
    if done is None:
        raise expired()


async def keep_response(pool: asyncpg.Pool, token: str, response: str, now: datetime) -> str:
    """Keeps a SAML sign-in's signed response for the page that posts it, for the assertion's lifetime; the
    token of that page."""
    respond_token = secrets.token_urlsafe(32)
    await pool.execute("UPDATE pending_sign_ins SET response = $2, response_token_hash = $3, expires_at = $4 "
                       "WHERE token_hash = $1", token_hash(token), response, token_hash(respond_token),
                       now + RESPONSE_LIFETIME)
    return respond_token


async def take_response(pool: asyncpg.Pool, respond_token: str, application_id: str,
                        now: datetime) -> tuple[PendingSignIn, str]:
    """The response kept under `respond_token` for this application's finished sign-in, once: gone after."""
    row = await pool.fetchrow(
        "UPDATE pending_sign_ins p SET response = NULL FROM pending_sign_ins old WHERE p.response_token_hash = $1 "
        "AND old.token_hash = p.token_hash AND p.response IS NOT NULL AND p.finished_at IS NOT NULL "
        "AND p.protocol = 'saml' AND p.application_id::text = $2 AND p.expires_at > $3 "
        "RETURNING p.application_id, p.protocol, p.request, old.response",
        token_hash(respond_token), application_id, now)
    if row is None:
        raise expired()
    return PendingSignIn(row["application_id"], row["protocol"], json.loads(row["request"])), row["response"]


def expired() -> Rejected:
    return Rejected("application_sign_in_expired", "This sign-in to an application has expired or was finished "
                    "already: go back to the application and sign in again.", Refusal.INVALID)
