"""Protected resources (rule 10): systems and SSO applications, their MFA switch, and the decision
endpoint that system agents (a PAM module, a macOS login agent, an SSO application) call.

On an MFA-enabled system a user who has completed setup must give a code; one who has not is
not asked. A system with MFA disabled never asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api, mfa_api
from mfaplane_contracts.commands import CODE_PATTERN, CommandReceipt, SystemLogin
from mfaplane_contracts.identity_api import MFASwitch, SignInCheck
from mfaplane_contracts.identity_events import LoginName, SignInSettings, SystemKind
from mfaplane_contracts.text import DisplayName, plain_text
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.api_versions import VERSIONED_RESPONSE, ApiVersion, deprecated_shape
from mfaplane_gateway.api.paging import decode_cursor, page_of
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import Body, ConsistentWith, Cursor, Limit
from mfaplane_gateway.bulk.piecewise import MAX_ITEMS, BulkResult, apply_each
from mfaplane_gateway.edge import rate_limits
from mfaplane_gateway.edge.auth import Admin, Reader, SystemAgent
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.rate_limits import RATE_LIMITED_RESPONSE, ClientSource
from mfaplane_gateway.read_models import read_your_writes
from mfaplane_gateway.read_models.principals_query import SearchText, containing
from mfaplane_gateway.read_models.registry import LIVE_TABLES

router = APIRouter(prefix="/v1/systems", tags=["systems and applications"])
AGENT_ACTOR = "gateway:system-agent"


class NewSystem(Body):
    name: DisplayName
    kind: SystemKind


class SystemChanges(Body):
    name: DisplayName


class BulkMFASwitch(MFASwitch):
    system_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_ITEMS)


class System(BaseModel):
    id: uuid.UUID
    name: str
    kind: SystemKind
    mfa_enabled: bool


class SystemPage(BaseModel):
    items: list[System]
    next_cursor: str | None


class AuthorizeRequest(Body):
    """Who is logging in: the login name, after the host checked a first factor of its own (a password, a
    public key), or the email and password for the gateway to check."""

    login_name: LoginName | None = None
    email: str | None = Field(default=None, min_length=1, max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=256)
    code: str | None = Field(default=None, min_length=6, max_length=32, pattern=CODE_PATTERN,
                             description="the code the user typed, on the call after `code_required`")
    # plain_text makes its Annotated type at run time, which mypy cannot follow
    source: plain_text(255, min_length=1) | None = Field(  # type: ignore[valid-type]
        default=None, description="where the login comes from as the agent sees it: the SSH client's address, or its "
                                  "host name where sshd resolves names (UseDNS)")

    @model_validator(mode="after")
    def _one_first_factor(self) -> AuthorizeRequest:
        if (self.email is None) != (self.password is None) or (self.login_name is None) == (self.email is None):
            raise ValueError("give either login_name, or email and password")
        return self


class Decision(BaseModel):
    decision: Literal["allow", "code_required", "deny"]
    reason: str


@router.post("", status_code=201, summary="Register a system or application")
async def register(body: NewSystem, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.call(identity_api.REGISTER_SYSTEM, caller.actor,
                                      identity_api.NewSystem(**body.model_dump())))


@router.get("", response_model=SystemPage | list[System], responses=VERSIONED_RESPONSE,
             summary="List systems and applications")
async def list_resources(runtime: RuntimeDep, _: Reader, response: Response, api_version: ApiVersion = None,
                         kind: SystemKind | None = None, mfa_enabled: bool | None = None,
                         q: Annotated[SearchText | None, Query(description="text in the name")] = None,
                         limit: Limit = 50, cursor: Cursor = None,
                         consistent_with: ConsistentWith = None) -> SystemPage | list[System]:
    """By name. With `API-Version`, a page; without, every one as a bare array (deprecated: ignores `limit` and
    `cursor`)."""
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    wanted = (kind, mfa_enabled, containing(q) if q else None)
    if api_version is None:
        deprecated_shape(response)
        return [_system(row) for row in await _systems(runtime.pool, *wanted)]
    rows, next_cursor = page_of(await _systems(runtime.pool, *wanted, limit + 1, cursor), limit, LISTING,
                                lambda row: (row["sort_value"], row["system_id"]))
    return SystemPage(items=[_system(row) for row in rows], next_cursor=next_cursor)


LISTING = "systems"  # what a cursor of the systems list is good for


async def _systems(pool: asyncpg.Pool, kind: str | None, mfa_enabled: bool | None, name_like: str | None,
                   limit: int | None = None, cursor: str | None = None) -> list[asyncpg.Record]:
    params: list = [kind, mfa_enabled, name_like, limit]
    after = ""
    if cursor:
        params += decode_cursor(cursor, LISTING, "text")
        after = "AND (lower(name), system_id) > ($5, $6) "
    return await pool.fetch(
        f"SELECT system_id, name, kind, mfa_enabled, lower(name) AS sort_value FROM {LIVE_TABLES['resources']} "
        f"WHERE name IS NOT NULL AND NOT deleted AND ($1::text IS NULL OR kind = $1) "
        f"AND ($2::boolean IS NULL OR mfa_enabled = $2) AND ($3::text IS NULL OR name ILIKE $3) "
        f"{after}ORDER BY lower(name), system_id LIMIT $4", *params,
    )


def _system(row: asyncpg.Record) -> System:
    return System(id=row["system_id"], name=row["name"], kind=row["kind"], mfa_enabled=row["mfa_enabled"])


@router.patch("/{system_id}", summary="Rename a system or application")
async def rename(system_id: uuid.UUID, body: SystemChanges, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.call(identity_api.RENAME_SYSTEM, caller.actor,
                                      identity_api.SystemChanges(**body.model_dump()), system_id=system_id))


@router.delete("/{system_id}", summary="Delete a system or application")
async def delete(system_id: uuid.UUID, caller: Admin, forward: ForwarderDep) -> Receipt:
    """Gone from the lists; the keys of its agents decide nothing any more (404 system_not_found)."""
    return receipt(await forward.call(identity_api.DELETE_SYSTEM, caller.actor, system_id=system_id))


@router.put("/{system_id}/mfa", summary="Switch MFA on or off for one")
async def switch_mfa(system_id: uuid.UUID, body: MFASwitch, caller: Admin, forward: ForwarderDep) -> Receipt:
    return receipt(await forward.call(identity_api.SET_SYSTEM_MFA, caller.actor, body, system_id=system_id))


@router.put("/{system_id}/sign-in", summary="Set how an SSO application signs users in")
async def configure_sign_in(system_id: uuid.UUID, body: SignInSettings, caller: Admin,
                            forward: ForwarderDep) -> Receipt:
    """OpenID Connect (`redirect_uris`) or SAML 2.0 (`entity_id`, `acs_urls`), replacing what was set before. The
    application's client id is its id; its client secret is a key minted for it (`POST /v1/api-keys`, role
    `sso_client`, its `system_id`). Only an `sso_application` signs users in (409 `not_an_application`); an
    address with a space, a control character or an invalid port is refused (422 `invalid_application_url`)."""
    return receipt(await forward.call(identity_api.CONFIGURE_SIGN_IN, caller.actor, body, system_id=system_id))


class SignIn(BaseModel):
    settings: SignInSettings | None = Field(description="null: not configured yet")
    client_id: uuid.UUID = Field(description="OpenID Connect: the application's id")
    issuer: str | None = Field(description="the identity provider the application trusts (null: SSO is off here)")
    oidc_discovery_url: str | None
    saml_metadata_url: str | None = Field(description="SAML: this application's identity-provider metadata (its own "
                                                       "entity id and single sign-on URL)")


@router.get("/{system_id}/sign-in", summary="How an SSO application signs users in")
async def sign_in_settings(system_id: uuid.UUID, _: Reader, request: Request, forward: ForwarderDep) -> SignIn:
    """The settings, and the addresses an application team needs, as identity has them now."""
    state = await forward.call(identity_api.SYSTEM_STATE, AGENT_ACTOR, system_id=system_id)
    sso = request.app.state.sso
    issuer = sso.issuer if sso else None
    return SignIn(settings=state.sign_in, client_id=system_id, issuer=issuer,
                  oidc_discovery_url=issuer and f"{issuer}/.well-known/openid-configuration",
                  saml_metadata_url=issuer and f"{issuer}/saml/{system_id}/metadata")


@router.post("/mfa/bulk", summary="Switch MFA on or off for several")
async def switch_mfa_in_bulk(body: BulkMFASwitch, caller: Admin, runtime: RuntimeDep,
                             forward: ForwarderDep) -> BulkResult:
    """Switches each system on its own: one refused leaves the others switched."""
    def switch(system_id: uuid.UUID) -> Callable[[], Awaitable[CommandReceipt]]:
        return lambda: forward.call(identity_api.SET_SYSTEM_MFA, caller.actor, MFASwitch(enabled=body.enabled),
                                    system_id=system_id)

    return await apply_each(runtime, ((system_id, switch(system_id)) for system_id in dict.fromkeys(body.system_ids)))


@router.post("/{system_id}/authorize", responses=RATE_LIMITED_RESPONSE, summary="Decide a login to a system")
async def authorize(system_id: uuid.UUID, body: AuthorizeRequest, caller: SystemAgent, forward: ForwarderDep,
                    request: Request, source: ClientSource) -> Decision:
    """Decided on identity's and mfa's current state, never on the gateway's projections: a decision is
    never older than a change any caller was told about, so it needs no consistency token. Every decision
    about a known user is a SystemAccessDecided on that user's history, the code's check included: the
    code is sent once, with the call that decides."""
    if caller.system_id != system_id:
        raise Rejected("agent_key_of_another_system", "This agent key decides for another system, or for none "
                       "(a key made before keys were bound): mint one for this system.", Refusal.FORBIDDEN)
    if body.password is not None:  # a password guess costs an argon2 hash: the sign-in's buckets apply
        rate_limits.admit(request, "sign_in", source)
    login = await _login(forward, system_id, body)
    if login.user_id is None:
        return Decision(decision="deny", reason=login.refusal)
    access = SystemLogin(system_id=system_id, mfa_enabled=login.mfa_enabled, code=body.code,
                         login_name=body.login_name, source=body.source)
    answer = await forward.call(mfa_api.DECIDE_ACCESS, caller.actor, access, scope="user_portal",
                                principal_id=login.user_id)
    return Decision(decision=answer.decision, reason=answer.reason)


def _a_host(state: identity_api.SystemState) -> identity_api.SystemState:
    """An agent decides logins to a host; a key bound to an application (possible before keys were bound
    by kind) decides nothing."""
    if state.kind not in ("macos", "linux"):
        raise Rejected("wrong_system_kind", "An agent key decides logins to a macOS or Linux system only: "
                       "mint one for the host.")
    return state


@dataclass(frozen=True)
class _Login:
    user_id: uuid.UUID | None  # None: nobody known, for `refusal`
    mfa_enabled: bool = False
    refusal: str = ""


async def _login(forward: Forwarder, system_id: uuid.UUID, body: AuthorizeRequest) -> _Login:
    """Who logs in, and whether the system asks for MFA (identity answers both for a login name)."""
    if body.login_name is not None:
        state = _a_host(await forward.call(identity_api.SYSTEM_STATE, AGENT_ACTOR, system_id=system_id,
                                           query={"login_name": body.login_name}))
        return _Login(state.user_id, state.mfa_enabled, "" if state.user_id else "unknown_login_name")
    enabled = _a_host(await forward.call(identity_api.SYSTEM_STATE, AGENT_ACTOR, system_id=system_id)).mfa_enabled
    try:
        principal = await forward.call(identity_api.AUTHENTICATE, AGENT_ACTOR,
                                       SignInCheck(kind="user", email=body.email, password=body.password))
    except Rejected as refused:
        return _Login(None, refusal=refused.code)
    return _Login(principal.principal_id, enabled)
