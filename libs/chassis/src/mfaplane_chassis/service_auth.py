"""Calls between services: each request carries a token its caller signed for it alone.

identity and mfa hold what an MFA enforcer must not give away (keys, passwords, API keys), and
anything in the cluster can open a connection to them. So they answer only a request that proves,
by itself, that an allowed service sent it, for whom, and what it asked.

Why a signed token per request rather than mutual TLS between pods: the proof has to carry the
actor (the admin or API key the gateway authenticated, written into every event), and a TLS
identity says only which pod connected; uvicorn does not hand the peer certificate to the
application either. A token also costs no handshake and no certificate per pod. It is a JWT in
JWS compact form (RFC 7515, alg Ed25519 of RFC 9864) signed with the caller's service key
(service_keys.py), which any JOSE library reads (tests cross-check with joserfc). The framing is
base64url and JSON around `cryptography`'s Ed25519, and no more: through joserfc, making and
checking a token cost more than the signature itself (docs/performance.md). It has:
- `iss` the calling service, `aud` the called one: a token for mfa is refused by identity;
- `iat`/`exp`, TOKEN_SECONDS apart: a captured token is soon worthless;
- `act` the actor, `cid` the correlation id, `idk` the command id: what the callee records, so no
  header a client could set decides who did something;
- `htm`, `htu` and `bsh` (SHA-256 of the body): the token is good for this one request;
- `jti`: a process refuses a token it has seen (`SeenTokens`). Another replica has not seen it, but
  a replayed command carries its command id, which the event store applies once; and the calls go
  over HTTPS, so a token is not there to be copied off the network in the first place.
What such a request can do is then bounded by which services may call (`ServiceSpec.callers`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from mfaplane_eventing import logs
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys, UntrustedSignature

ALGORITHM = "Ed25519"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
TOKEN_SECONDS = 30
CLOCK_SKEW_SECONDS = 5


def body_digest(body: bytes) -> str:
    return _b64(hashlib.sha256(body).digest())


@dataclass(frozen=True)
class Call:
    """A request as its signed token describes it."""

    caller: str
    actor: str
    correlation_id: uuid.UUID
    command_id: uuid.UUID


class CallSigner:
    """The calling side: a token for each request."""

    def __init__(self, service: str, key: ServiceKey) -> None:
        self._service = service
        self._key = key
        self._header = _encode({"alg": ALGORITHM, "kid": key.key_id, "typ": "JWT"})

    def authorization(self, audience: str, method: str, path: str, body: bytes, call: Call) -> str:
        now = int(time.time())
        claims = {"iss": self._service, "aud": audience, "iat": now, "exp": now + TOKEN_SECONDS,
                  "jti": uuid.uuid4().hex, "act": call.actor, "cid": str(call.correlation_id),
                  "idk": str(call.command_id), "htm": method, "htu": path, "bsh": body_digest(body)}
        signed = f"{self._header}.{_encode(claims)}"
        return f"Bearer {signed}.{_b64(self._key.sign(signed.encode()))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encode(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document, separators=(",", ":")).encode())


def _decode(part: str) -> bytes:
    if not _BASE64URL.fullmatch(part):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


CALLER_NOT_AUTHENTICATED = "caller_not_authenticated"


def _refused(detail: str) -> Rejected:
    return Rejected(CALLER_NOT_AUTHENTICATED, detail, Refusal.UNAUTHENTICATED)


class SeenTokens:
    """The ids of the tokens a process accepted, kept until they expire."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._next_sweep = 0.0

    def first_use(self, token_id: str, expires: float) -> bool:
        now = time.time()
        if now >= self._next_sweep:
            self._expiry = {seen: at for seen, at in self._expiry.items() if at + CLOCK_SKEW_SECONDS > now}
            self._next_sweep = now + TOKEN_SECONDS
        if token_id in self._expiry:
            return False
        self._expiry[token_id] = expires
        return True


class CallVerifier:
    """The called side: who may call, and the keys that prove it."""

    def __init__(self, service: str, callers: frozenset[str], keys: TrustedKeys) -> None:
        self._service = service
        self._callers = callers
        self._keys = keys
        self._seen = SeenTokens()

    def verify(self, authorization: str | None, method: str, path: str, body: bytes) -> Call:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _refused("This service answers only other services' signed calls.")
        try:
            caller, claims = self._signed_claims(token)
            self._check(claims, caller, method, path, body)
            return Call(caller, str(claims["act"]), uuid.UUID(claims["cid"]), uuid.UUID(claims["idk"]))
        except (UntrustedSignature, KeyError, ValueError, TypeError, AttributeError) as error:
            raise _refused(f"The call's token is not valid ({type(error).__name__}).") from None

    def _signed_claims(self, token: str) -> tuple[str, dict[str, Any]]:
        """The calling service and the claims, once the signature of an allowed caller's key holds."""
        header_part, claims_part, signature = token.split(".")
        header = json.loads(_decode(header_part))
        if header.get("alg") != ALGORITHM:  # never "none", nor another algorithm the key is not for
            raise ValueError("algorithm")
        if self._keys.owner(header.get("kid")).service not in self._callers:  # before the costly verification
            raise _refused("The calling service may not call this one.")
        caller = self._keys.verify(header["kid"], _decode(signature), f"{header_part}.{claims_part}".encode())
        return caller, json.loads(_decode(claims_part))

    def _check(self, claims: dict[str, Any], caller: str, method: str, path: str, body: bytes) -> None:
        expected = {"iss": caller, "aud": self._service, "htm": method, "htu": path, "bsh": body_digest(body)}
        if any(claims.get(name) != value for name, value in expected.items()):
            raise _refused("The call's token is for another request.")
        issued, expires, now = claims["iat"], claims["exp"], time.time()
        if not (isinstance(issued, int) and isinstance(expires, int)):
            raise ValueError("times")
        if issued > now + CLOCK_SKEW_SECONDS or expires < now - CLOCK_SKEW_SECONDS:
            raise _refused("The call's token is not valid now.")
        if expires - issued > TOKEN_SECONDS:
            raise _refused("The call's token lives longer than calls' tokens may.")
        if not self._seen.first_use(str(claims["jti"]), expires):
            raise _refused("The call's token was used before.")


async def verified_call(request: Request) -> Call:
    """The request's proven origin; every route of a service with callers depends on it."""
    verifier: CallVerifier = request.app.state.call_verifier
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    call = verifier.verify(request.headers.get("authorization"), request.method, path, await request.body())
    logs.correlation_id.set(str(call.correlation_id))
    return call


CallDep = Annotated[Call, Depends(verified_call)]
