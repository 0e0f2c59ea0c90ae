"""Calls between services: a token is good for one request, from one allowed service, to one service."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from mfaplane_chassis.service_auth import ALGORITHM, TOKEN_SECONDS, Call, CallSigner, CallVerifier, body_digest
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys

GATEWAY, NOTIFIER, OUTSIDER = ServiceKey.generate(), ServiceKey.generate(), ServiceKey.generate()
KEYS = TrustedKeys.from_json(json.dumps({"gateway": [GATEWAY.public_base64()],
                                         "notifier": [NOTIFIER.public_base64()]}))
MFA = CallVerifier("mfa", frozenset({"gateway"}), KEYS)
PATH = f"/enrollments/user_portal/{uuid.uuid4()}/remove-requirement"
BODY = b"{}"
CALL = Call("gateway", "admin:3f1c", uuid.uuid4(), uuid.uuid4())


def token(key: ServiceKey = GATEWAY, service: str = "gateway", audience: str = "mfa", method: str = "POST",
          path: str = PATH, body: bytes = BODY) -> str:
    return CallSigner(service, key).authorization(audience, method, path, body, CALL)


def refused(authorization: str | None, method: str = "POST", path: str = PATH, body: bytes = BODY) -> str:
    with pytest.raises(Rejected) as refusal:
        MFA.verify(authorization, method, path, body)
    assert (refusal.value.kind, refusal.value.code) == (Refusal.UNAUTHENTICATED, "caller_not_authenticated")
    return refusal.value.detail


def forged(claims: dict, key: ServiceKey = GATEWAY) -> str:
    """A token made by another JOSE library (joserfc) with `claims`."""
    header = {"alg": ALGORITHM, "kid": key.key_id}
    return "Bearer " + jwt.encode(header, claims, OKPKey.import_key(key.private_pem()), algorithms=[ALGORITHM])


def test_the_gateways_token_for_this_request_proves_who_asked_and_for_whom() -> None:
    assert MFA.verify(token(), "POST", PATH, BODY) == CALL


def test_tokens_are_standard_jws_that_another_library_reads_and_writes() -> None:
    """Ours decode and verify with joserfc; a token joserfc makes with the same claims verifies with ours."""
    decoded = jwt.decode(token().removeprefix("Bearer "), OKPKey.import_key(GATEWAY.public), algorithms=[ALGORITHM])
    assert decoded.header == {"alg": ALGORITHM, "kid": GATEWAY.key_id, "typ": "JWT"}
    assert (decoded.claims["iss"], decoded.claims["aud"], decoded.claims["act"]) == ("gateway", "mfa", CALL.actor)
    claims = {**decoded.claims, "jti": uuid.uuid4().hex}
    assert MFA.verify(forged(claims), "POST", PATH, BODY) == CALL


def test_a_token_is_good_once() -> None:
    replayed = token()
    MFA.verify(replayed, "POST", PATH, BODY)
    assert "used before" in refused(replayed)
    assert MFA.verify(token(), "POST", PATH, BODY) == CALL, "a new token for the same request is fine"


def test_no_token_or_another_scheme_is_refused() -> None:
    refused(None)
    refused("Basic Z2F0ZXdheTpzZWNyZXQ=")
    refused("Bearer ")
    refused("Bearer not-a-jws")


@pytest.mark.parametrize("change", ["method", "path", "query", "body"])
def test_a_token_is_good_for_its_own_request_only(change: str) -> None:
    """A captured token cannot carry another command: it names the method, path and body it was made for."""
    method, path, body = {"method": ("DELETE", PATH, BODY),
                          "path": ("POST", PATH.replace("remove-requirement", "reset"), BODY),
                          "query": ("POST", PATH + "?x=1", BODY),
                          "body": ("POST", PATH, b'{"enrollment_days": 365}')}[change]
    refused(token(), method, path, body)


def test_a_token_for_another_service_is_refused() -> None:
    refused(token(audience="identity"))


def test_a_service_that_may_not_call_is_refused_even_with_its_own_valid_key() -> None:
    assert "may not call" in refused(token(NOTIFIER, service="notifier"))


def test_a_key_no_service_holds_is_refused_whatever_the_token_claims() -> None:
    refused(token(OUTSIDER))


def test_a_token_claiming_to_be_the_gateway_under_another_services_key_is_refused() -> None:
    refused(token(NOTIFIER, service="gateway"))


def test_an_expired_or_long_lived_token_is_refused() -> None:
    now = int(time.time())
    claims = {"iss": "gateway", "aud": "mfa", "act": "admin:3f1c", "cid": str(uuid.uuid4()), "idk": str(uuid.uuid4()),
              "htm": "POST", "htu": PATH, "bsh": body_digest(BODY), "jti": uuid.uuid4().hex}
    refused(forged({**claims, "iat": now - 120, "exp": now - 60}))
    refused(forged({**claims, "iat": now, "exp": now + 24 * 3600}))
    genuine = forged({**claims, "iat": now, "exp": now + TOKEN_SECONDS})
    assert MFA.verify(genuine, "POST", PATH, BODY).actor == "admin:3f1c"


def test_an_unsigned_token_is_refused() -> None:
    """alg "none": the classic JWT forgery; only Ed25519 is accepted."""
    now = int(time.time())
    claims = {"iss": "gateway", "aud": "mfa", "iat": now, "exp": now + 10, "act": "admin:x", "cid": str(uuid.uuid4()),
              "idk": str(uuid.uuid4()), "htm": "POST", "htu": PATH, "bsh": body_digest(BODY), "jti": uuid.uuid4().hex}
    segments = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                for part in ({"alg": "none", "kid": GATEWAY.key_id}, claims)]
    refused("Bearer " + ".".join(segments) + ".")


def test_a_changed_claim_breaks_the_signature() -> None:
    header, claims, signature = token().removeprefix("Bearer ").split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["act"] = "admin:someone-else"
    changed = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    refused(f"Bearer {header}.{changed}.{signature}")
