"""Calls between services: each request carries a token its caller signed for it alone.

identity and mfa hold what an MFA enforcer must not give away (keys, passwords, API keys), and
anything in the cluster can open a connection to them. So they answer only a request that proves,
by itself, that an allowed service sent it, for whom, and what it asked.

Why a signed token per request rather than mutual TLS between pods: the proof has to carry the
actor (the admin or API key the gateway authenticated, written into every event), and a TLS
identity says only which pod connected; uvicorn does not hand the peer certificate to the
application either. A token also costs no handshake and no certificate per pod. It is a JWS
(joserfc, alg Ed25519, RFC 9864) signed with the caller's service key (service_keys.py) with:
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
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from mfaplane_eventing import logs
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys, UntrustedSignature

ALGORITHMS = ["Ed25519"]
TOKEN_SECONDS = 30
CLOCK_SKEW_SECONDS = 5


def body_digest(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


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
        self._key_id = key.key_id
        self._jwk = OKPKey.import_key(key.private_pem())

    def authorization(self, audience: str, method: str, path: str, body: bytes, call: Call) -> str:
        now = int(time.time())
        claims = {"iss": self._service, "aud": audience, "iat": now, "exp": now + TOKEN_SECONDS, "jti": uuid.uuid4().hex,
                  "act": call.actor, "cid": str(call.correlation_id), "idk": str(call.command_id),
                  "htm": method, "htu": path, "bsh": body_digest(body)}
        token = jwt.encode({"alg": ALGORITHMS[0], "kid": self._key_id}, claims, self._jwk, algorithms=ALGORITHMS)
        return f"Bearer {token}"


CALLER_NOT_AUTHENTICATED = "caller_not_authenticated"


def _refused(detail: str) -> Rejected:
    return Rejected(CALLER_NOT_AUTHENTICATED, detail, 401)


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
        self._jwks: dict[str, OKPKey] = {}  # imported once per key id
        self._seen = SeenTokens()

    def _key(self, kid: object) -> tuple[str, OKPKey]:
        public = self._keys.owner(kid)  # type: ignore[arg-type]
        if public.service not in self._callers:
            raise _refused("The calling service may not call this one.")
        if kid not in self._jwks:
            self._jwks[kid] = OKPKey.import_key(public.key)  # type: ignore[index]
        return public.service, self._jwks[kid]  # type: ignore[index]

    def verify(self, authorization: str | None, method: str, path: str, body: bytes) -> Call:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _refused("This service answers only other services' signed calls.")
        try:
            caller, key = self._key(jws.extract_compact(token.encode()).protected.get("kid"))
            claims = jwt.decode(token, key, algorithms=ALGORITHMS).claims
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_SKEW_SECONDS, iss={"essential": True, "value": caller},
                aud={"essential": True, "value": self._service}, exp={"essential": True},
                iat={"essential": True}, jti={"essential": True}, htm={"essential": True, "value": method},
                htu={"essential": True, "value": path}, bsh={"essential": True, "value": body_digest(body)},
            ).validate(claims)
            if claims["exp"] - claims["iat"] > TOKEN_SECONDS:
                raise _refused("The call's token lives longer than calls' tokens may.")
            if not self._seen.first_use(str(claims["jti"]), claims["exp"]):
                raise _refused("The call's token was used before.")
            return Call(caller, str(claims["act"]), uuid.UUID(claims["cid"]), uuid.UUID(claims["idk"]))
        except (JoseError, UntrustedSignature, KeyError, ValueError, TypeError) as error:
            raise _refused(f"The call's token is not valid ({type(error).__name__}).") from None


async def verified_call(request: Request) -> Call:
    """The request's proven origin; every route of a service with callers depends on it."""
    verifier: CallVerifier = request.app.state.call_verifier
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    call = verifier.verify(request.headers.get("authorization"), request.method, path, await request.body())
    logs.correlation_id.set(str(call.correlation_id))
    return call


CallDep = Annotated[Call, Depends(verified_call)]
