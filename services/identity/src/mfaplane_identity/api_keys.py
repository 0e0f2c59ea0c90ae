"""API credentials: keys with a role, stored hashed, created and revoked as events.

A key is `mfp_<key id hex>_<43 characters of secret>`. The id finds the row; the SHA-256 of the
whole key is compared in constant time. Neither the key nor its hash is ever in an event.

Every key expires (at most MAX_LIFETIME after it was made, by the identity service's clock): a key
copied out of a script or a CI secret is not good forever, and a forgotten integration surfaces
when it fails instead of holding access nobody remembers. Keys made before keys expired were given
90 days from the upgrade (migration 0004).

A system agent's key is bound to one system (a host): the decision endpoint answers it for that
system only, so a key taken from one host decides nothing for another.

A key an admin minted lives no longer than that admin: once the admin is deleted, the key is refused
(its status in the listing says why). Otherwise a stolen admin session, stepped up for a few minutes,
could leave behind a key that outlives every remedy applied to the admin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_api import API_KEY_DEFAULT_DAYS, API_KEY_MAX_DAYS
from mfaplane_contracts.identity_events import ApiKeyCreated, ApiKeyRevoked, ApiRole
from mfaplane_eventing.aggregate import Refusal, Rejected

PREFIX = "mfp_"
DEFAULT_LIFETIME = timedelta(days=API_KEY_DEFAULT_DAYS)
MAX_LIFETIME = timedelta(days=API_KEY_MAX_DAYS)


@dataclass(frozen=True)
class ApiKey:
    exists: bool = False
    revoked: bool = False


def apply(state: ApiKey, event: EventPayload) -> ApiKey:
    match event:
        case ApiKeyCreated():
            return ApiKey(exists=True)
        case ApiKeyRevoked():
            return ApiKey(exists=True, revoked=True)
    return state


def create(state: ApiKey, key_id: uuid.UUID, role: ApiRole, name: str, expires_at: datetime,
           system_id: uuid.UUID | None = None) -> list[EventPayload]:
    if state.exists:
        raise Rejected("api_key_exists", "An API key with this id already exists.")
    return [ApiKeyCreated(key_id=key_id, role=role, name=name, expires_at=expires_at, system_id=system_id)]


def revoke(state: ApiKey, key_id: uuid.UUID) -> list[EventPayload]:
    if not state.exists:
        raise Rejected("api_key_not_found", "No such API key.", Refusal.NOT_FOUND)
    return [] if state.revoked else [ApiKeyRevoked(key_id=key_id)]


def new_key(key_id: uuid.UUID) -> str:
    return f"{PREFIX}{key_id.hex}_{secrets.token_urlsafe(32)}"


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> uuid.UUID | None:
    parts = key.split("_")
    if len(parts) < 3 or f"{parts[0]}_" != PREFIX:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


# A key's status at $1: why it is refused, or active.
STATUS = (
    "CASE WHEN revoked THEN 'revoked' WHEN expires_at <= $1 THEN 'expired' "
    "WHEN EXISTS (SELECT FROM credentials WHERE 'admin:' || principal_id::text = api_keys.created_by AND deleted) "
    "THEN 'creator_deleted' ELSE 'active' END"
)


async def role_of(conn: asyncpg.Connection | asyncpg.Pool, key: str,
                  now: datetime) -> tuple[uuid.UUID, str, uuid.UUID | None] | None:
    """The key's id, role and system (an agent's), or None for an unknown, revoked, expired or forged key,
    or one whose admin is gone."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    row = await conn.fetchrow(f"SELECT role, key_hash, system_id FROM api_keys WHERE key_id = $2 AND "
                              f"{STATUS} = 'active'", now, key_id)
    if row is None or not hmac.compare_digest(row["key_hash"], key_hash(key)):
        return None
    return key_id, row["role"], row["system_id"]
