"""The OpenID Connect provider: discovery, JWKS, the authorization code flow with PKCE (S256, always),
the token and userinfo endpoints.

The protocol is authlib's (its AuthorizationServer, AuthorizationCodeGrant, CodeChallenge and
OpenIDCode): this module gives it what it asks for. authlib is synchronous and asks for clients and
codes by callback, while the gateway reads them asynchronously (identity, PostgreSQL), so each request
reads what authlib will ask for first, runs authlib on it in memory, and stores what authlib saved
after: `Provider` is made per request, around what was read.

The authorization request is checked here, then kept (pending.py) while the user signs in through the
user portal; `authorization_redirect` makes the code once they have. A code is good once, for a minute,
for the application it was issued to, with the verifier of its challenge; a code redeemed twice
revokes the access token the first redemption gave (RFC 6749 section 4.1.2). Errors are OAuth's
(`error`, `error_description`), as applications' libraries expect them, except where the application
cannot be trusted with the answer (an unknown client, a redirect URI not registered): that is a
problem+json to the browser, which is never sent on.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.forwarding import ForwarderDep
from mfaplane_gateway.edge.rate_limits import CHALLENGE_LIMIT
from mfaplane_gateway.sso import pending
from mfaplane_gateway.sso.applications import SCOPES, Application, application, verify_secret
from mfaplane_gateway.sso.config import MFA, SignInProof, SSOConfig, SSODep
from mfaplane_gateway.sso.pending import ApplicationSignIn, PendingSignIn, token_hash

# Described by the discovery document (and docs/sso.md), not by the /v1 API's OpenAPI: no API key, OAuth's errors.
router = APIRouter(include_in_schema=False)
AUTHORIZATION_PARAMETERS = frozenset({"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                                      "code_challenge", "code_challenge_method", "prompt", "response_mode",
                                      "acr_values"})
MAX_PARAMETER_LENGTH = 2000  # a redirect URI's limit; state and nonce are far shorter in practice
CODE_LIFETIME = timedelta(minutes=1)
ACCESS_TOKEN_SECONDS = 300
ID_TOKEN_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, items: list[tuple[str, str]], headers: Any = None) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(items)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data


@dataclass(frozen=True)
class _Code:
    """An authorization code as authlib reads it back (AuthorizationCodeMixin)."""

    grant: dict[str, Any]
    principal_id: uuid.UUID | None = None
    authenticated_at: datetime | None = None

    def get_redirect_uri(self) -> str:
        return self.grant["redirect_uri"]

    def get_scope(self) -> str:
        return self.grant["scope"]

    def get_nonce(self) -> str | None:
        return self.grant["nonce"]

    def get_auth_time(self) -> int:
        return self.grant["auth_time"]

    def get_acr(self) -> str:
        return self.grant["acr"]

    def get_amr(self) -> list[str]:
        return self.grant["amr"]


class _S256Only(CodeChallenge):
    """PKCE on every authorization request, with S256 (RFC 9700 section 2.1.1): `plain` is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE with S256 is required.")
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Unsupported 'code_challenge_method': use S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: _Code) -> str:
        return authorization_code.grant["code_challenge"]

    def get_authorization_code_challenge_method(self, authorization_code: _Code) -> str:
        return authorization_code.grant["code_challenge_method"]


class _IdToken(OpenIDCode):
    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # the application checks that its nonce comes back (OpenID Connect Core 15.5.2)

    def resolve_client_private_key(self, client: Application) -> Any:
        return self.provider.config.keys.active.jwk

    def get_encode_header(self, client: Application) -> dict[str, str]:
        return {"alg": self.get_client_algorithm(client), "kid": self.provider.config.keys.active.kid}

    def get_client_claims(self, client: Application) -> dict[str, Any]:
        return {"iss": self.provider.config.issuer, "aud": [client.get_client_id()],
                "exp": int(time.time()) + ID_TOKEN_SECONDS}

    def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
        return claims_for(user, scope)


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.server.saved_code = code

    def query_authorization_code(self, code: str, client: Application) -> _Code | None:
        return self.server.redeemed_code

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        """Redeemed already, when it was read (redeem)."""

    def authenticate_user(self, authorization_code: _Code) -> dict[str, Any]:
        return authorization_code.grant["user"]


class Provider(AuthorizationServer):
    """authlib's server for one request, over what was read for it."""

    def __init__(self, config: SSOConfig, client: Application | None, redeemed_code: _Code | None = None) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.config, self.client, self.redeemed_code = config, client, redeemed_code
        self.saved_code: str | None = None
        self.saved_token: dict[str, Any] | None = None
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32), expires_generator=ACCESS_TOKEN_SECONDS))
        self.register_grant(_CodeGrant, [_S256Only(), _IdToken(self)])

    def query_client(self, client_id: str) -> Application | None:
        return self.client if self.client and client_id == self.client.get_client_id() else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.saved_token = token

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request  # made from the HTTP request before authlib runs (_oauth_request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        named = dict(headers)
        if status == 302:
            return RedirectResponse(named["Location"], status_code=302)
        return JSONResponse(body, status_code=status, headers={**named, **NO_STORE})

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def claims_for(user: dict[str, Any], scope: str) -> UserInfo:
    scopes = scope.split()
    claims = UserInfo(sub=user["sub"])
    if "email" in scopes:
        claims["email"] = user["email"]
    if "profile" in scopes:
        claims["name"] = user["name"]
    return claims


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery")
async def discovery(sso: SSODep) -> dict[str, Any]:
    issuer = sso.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oidc/authorize",
        "token_endpoint": f"{issuer}/oidc/token",
        "userinfo_endpoint": f"{issuer}/oidc/userinfo",
        "jwks_uri": f"{issuer}/oidc/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": list(SCOPES),
        "token_endpoint_auth_methods_supported": _CodeGrant.TOKEN_ENDPOINT_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "email", "name"],
        "acr_values_supported": list(SignInProof.ACR_VALUES),
        "authorization_response_iss_parameter_supported": True,
    }


@router.get("/oidc/jwks", summary="The keys that sign ID tokens")
async def jwks(sso: SSODep) -> dict[str, Any]:
    return sso.keys.jwks()


def _oauth_request(sso: SSOConfig, method: str, path: str, items: list[tuple[str, str]],
                   headers: Any = None) -> _Request:
    return _Request(method, f"{sso.issuer}{path}", items, headers)


@router.get("/oidc/authorize", dependencies=[CHALLENGE_LIMIT], summary="Authorization endpoint (code flow with PKCE)")
async def authorize(request: Request, sso: SSODep, runtime: RuntimeDep, forward: ForwarderDep) -> Response:
    """Checks the application's request, keeps it, and sends the browser to the user portal to sign in."""
    items = _authorization_parameters(request)
    client = await application(forward, dict(items).get("client_id", ""), "oidc")
    provider = Provider(sso, client)
    oauth_request = _oauth_request(sso, "GET", "/oidc/authorize", items)
    try:
        provider.get_consent_grant(oauth_request)
    except OAuth2Error as error:
        if error.redirect_uri:
            return provider.handle_error_response(oauth_request, error)
        raise Rejected("invalid_authorization_request", error.description or error.error, Refusal.INVALID) from None
    assert client is not None  # the grant refuses an unknown client, with no redirect_uri
    mfa_requested = dict(items).get("acr_values", "").split() == [MFA]  # a voluntary claim, taken as a demand
    kept = PendingSignIn(client.id, "oidc", {"params": items, "return_to": oauth_request.payload.redirect_uri,
                                            "mfa_requested": mfa_requested})
    token = await pending.keep(runtime.pool, kept, runtime.clock.now())
    return RedirectResponse(sso.sign_in_page(token), status_code=303)


def _authorization_parameters(request: Request) -> list[tuple[str, str]]:
    """The request's parameters of this protocol, each of a bounded length: nothing else is kept."""
    items = [(key, value) for key, value in request.query_params.multi_items() if key in AUTHORIZATION_PARAMETERS]
    if any(len(value) > MAX_PARAMETER_LENGTH for _, value in items):
        raise Rejected("invalid_authorization_request", "A parameter of the authorization request is longer "
                       f"than {MAX_PARAMETER_LENGTH} characters.", Refusal.INVALID)
    return items


async def authorization_redirect(runtime: Runtime, sign_in: ApplicationSignIn, proof: SignInProof) -> str:
    """The application's redirect URI with a new code, for the user `proof` says signed in."""
    sso, client = sign_in.sso, sign_in.application
    items = [tuple(item) for item in sign_in.pending.request["params"]]
    provider = Provider(sso, client)
    oauth_request = _oauth_request(sso, "GET", "/oidc/authorize", items)
    grant = provider.get_consent_grant(oauth_request)
    response = provider.create_authorization_response(oauth_request, grant_user=proof.claims, grant=grant)
    assert provider.saved_code is not None, "authlib issued no code"
    params = oauth_request.payload.data
    grant_data = {"redirect_uri": params["redirect_uri"], "scope": oauth_request.scope,
                  "nonce": params.get("nonce"), "code_challenge": params["code_challenge"],
                  "code_challenge_method": params["code_challenge_method"], "user": proof.claims,
                  "auth_time": proof.auth_time, "acr": proof.acr, "amr": list(proof.amr)}
    now = runtime.clock.now()
    await runtime.pool.execute(
        "INSERT INTO oidc_codes (code_hash, application_id, principal_id, authenticated_at, grant_data, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)", token_hash(provider.saved_code), client.id, uuid.UUID(proof.subject), now,
        json.dumps(grant_data), now + CODE_LIFETIME)
    return add_params_to_uri(response.headers["location"], [("iss", sso.issuer)])  # RFC 9207: against mix-ups


@router.post("/oidc/token", dependencies=[CHALLENGE_LIMIT], summary="Token endpoint")
async def token(request: Request, sso: SSODep, runtime: RuntimeDep, forward: ForwarderDep) -> Response:
    """The code redeemed, authlib's answer made and its access token stored in one transaction: a second
    redemption of the same code waits for it, then revokes the token it gave."""
    items = await _form(request)
    client = await _authenticated_client(request, items, forward)
    code = dict(items).get("code")
    async with runtime.pool.acquire() as conn, conn.transaction():
        redeemed = await _redeem(conn, runtime.clock.now(), client, code) if client and code else None
        provider = Provider(sso, client, redeemed)
        response = provider.create_token_response(_oauth_request(sso, "POST", "/oidc/token", items, request.headers))
        if provider.saved_token:
            assert redeemed is not None and code is not None
            await conn.execute(
                "INSERT INTO oidc_access_tokens (token_hash, code_hash, principal_id, authenticated_at, claims, "
                "expires_at) VALUES ($1, $2, $3, $4, $5, $6)", token_hash(provider.saved_token["access_token"]),
                token_hash(code), redeemed.principal_id, redeemed.authenticated_at,
                json.dumps(dict(claims_for(redeemed.grant["user"], redeemed.get_scope()))),
                runtime.clock.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS))
    return response


async def _form(request: Request) -> list[tuple[str, str]]:
    """The token request's parameters: a form, URL-encoded (RFC 6749 section 4.1.3), and nothing else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Rejected("unsupported_media_type", "Send the token request as application/x-www-form-urlencoded.",
                       Refusal.UNSUPPORTED_MEDIA_TYPE)
    try:
        return parse_qsl((await request.body()).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Rejected("invalid_form", "The form is not UTF-8.", Refusal.INVALID) from None


async def _authenticated_client(request: Request, items: list[tuple[str, str]],
                                forward: ForwarderDep) -> Application | None:
    """The application the request names, with its secret checked by identity (authlib compares it after)."""
    client_id, secret = extract_basic_authorization(request.headers)
    if client_id is None:
        client_id, secret = dict(items).get("client_id"), dict(items).get("client_secret")
    client = await application(forward, client_id, "oidc") if client_id else None
    if client and secret:
        await verify_secret(forward, client, secret)
    return client


async def _redeem(conn: asyncpg.Connection, now: datetime, client: Application, code: str) -> _Code | None:
    """The code's grant, if it is this application's, unexpired, its user not cut off since (deleted, password
    changed, sessions ended) and redeemed for the first time now; a code redeemed before revokes the access
    token it gave."""
    if client.verified_secret is None:
        return None  # authlib refuses the client: the code stays good for the application that holds it
    row = await conn.fetchrow(
        "UPDATE oidc_codes SET used_at = $3 WHERE code_hash = $1 AND application_id = $2 AND used_at IS NULL "
        f"AND {NOT_CUT_OFF.format(table='oidc_codes')} "
        "RETURNING grant_data, expires_at, principal_id, authenticated_at", token_hash(code), client.id, now)
    if row is None:
        await conn.execute("DELETE FROM oidc_access_tokens WHERE code_hash = $1 AND EXISTS (SELECT FROM oidc_codes "
                           "WHERE code_hash = $1 AND application_id = $2)", token_hash(code), client.id)
        return None
    if row["expires_at"] <= now:
        return None
    return _Code(json.loads(row["grant_data"]), row["principal_id"], row["authenticated_at"])


# A code or access token is refused once its user was cut off after it was issued (sessions.py's cutoffs).
NOT_CUT_OFF = ("NOT EXISTS (SELECT FROM principal_cutoffs c WHERE c.principal_id = {table}.principal_id "
               "AND c.not_before >= {table}.authenticated_at)")


@router.api_route("/oidc/userinfo", methods=["GET", "POST"], dependencies=[CHALLENGE_LIMIT],
                  summary="UserInfo endpoint")
async def userinfo(request: Request, sso: SSODep, runtime: RuntimeDep) -> Response:
    scheme, _, access_token = request.headers.get("authorization", "").partition(" ")
    claims = access_token and scheme.lower() == "bearer" and await runtime.pool.fetchval(
        "SELECT claims FROM oidc_access_tokens WHERE token_hash = $1 AND expires_at > $2 "
        f"AND {NOT_CUT_OFF.format(table='oidc_access_tokens')}", token_hash(access_token), runtime.clock.now())
    if not claims:
        return JSONResponse({"error": "invalid_token"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **NO_STORE})
    return JSONResponse(json.loads(claims), headers=NO_STORE)

