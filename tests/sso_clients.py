"""Applications that sign their users in through the gateway with standard libraries and nothing of ours:
an OpenID Connect relying party (authlib's Starlette client) and a SAML service provider (pysaml2's
Saml2Client, with xmlsec1), each served on loopback by uvicorn in a thread.

The relying party does what an application team's would: discovery, the authorization code flow with
PKCE (S256) and a nonce, the ID token checked against the JWKS (signature, issuer, audience, expiry,
nonce), then userinfo. Its callback page shows what it learnt as JSON, or the error it refused with.
The service provider sends an AuthnRequest by HTTP-Redirect and takes the response by HTTP-POST at its
ACS URL, which checks the signatures against the identity provider's metadata, the audience, the
recipient, the validity window and that it answers a request it made (each answered once).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

import uvicorn
from authlib.integrations.starlette_client import OAuth, OAuthError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.sigver import get_xmlsec_binary
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

HOST = "127.0.0.1"


def oidc_relying_party(discovery_url: str, client_id: str, client_secret: str) -> Starlette:
    oauth = OAuth()
    oauth.register("mfaplane", client_id=client_id, client_secret=client_secret, server_metadata_url=discovery_url,
                   client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"})

    async def login(request: Request):
        return await oauth.mfaplane.authorize_redirect(request, str(request.url_for("callback")))

    async def callback(request: Request) -> JSONResponse:
        try:
            token = await oauth.mfaplane.authorize_access_token(request)
        except OAuthError as error:
            return JSONResponse({"refused": error.error, "description": error.description}, status_code=400)
        userinfo = await oauth.mfaplane.userinfo(token=token)
        return JSONResponse({"id_token": token["id_token"], "claims": dict(token["userinfo"]),
                             "userinfo": dict(userinfo)})

    return Starlette(routes=[Route("/login", login), Route("/callback", callback, name="callback")],
                     middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_hex(32))])


@contextmanager
def serving(app: Starlette, port: int) -> Iterator[str]:
    """`app` on loopback `port` for the block; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the relying party did not start"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def saml_service_provider(base_url: str, idp_metadata: str) -> tuple[Starlette, Saml2Client]:
    """The service provider's app (GET /login, POST /acs) and its pysaml2 client."""
    client = Saml2Client(SPConfig().load({
        "entityid": f"{base_url}/saml/metadata",
        "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
        "metadata": {"inline": [idp_metadata]},
        "allow_unknown_attributes": True,
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(f"{base_url}/acs", BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "want_response_signed": True,
                           "allow_unsolicited": False, "authn_requests_signed": False}},
    }))
    outstanding: dict[str, str] = {}

    async def login(request: Request) -> RedirectResponse:
        return RedirectResponse(authn_request_url(client, outstanding), status_code=303)

    async def acs(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        try:
            answer = accepted(client, form["SAMLResponse"], outstanding)
        except Exception as error:  # pysaml2 refuses with many exception types
            return JSONResponse({"refused": type(error).__name__, "description": str(error)}, status_code=400)
        return JSONResponse({**answer, "relay_state": form.get("RelayState")})

    app = Starlette(routes=[Route("/login", login), Route("/acs", acs, methods=["POST"])])
    return app, client


def authn_request_url(client: Saml2Client, outstanding: dict[str, str]) -> str:
    """An AuthnRequest to the one identity provider in the metadata, by HTTP-Redirect (remembered as outstanding)."""
    idp = next(iter(client.metadata.identity_providers()))
    request_id, info = client.prepare_for_authenticate(entityid=idp, relay_state="from-the-app",
                                                       binding=BINDING_HTTP_REDIRECT)
    outstanding[request_id] = "/"
    return dict(info["headers"])["Location"]


def accepted(client: Saml2Client, saml_response: str, outstanding: dict[str, str]) -> dict:
    """What the service provider learns from a response it accepts (raises when it refuses one)."""
    response = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding=outstanding)
    if response is None or not response.assertions:  # pysaml2 drops an assertion whose recipient is another
        raise ValueError("no assertion for this service provider")
    del outstanding[response.in_response_to]  # each request is answered once
    (class_ref, authorities, _), = response.authn_info()
    return {"name_id": response.name_id.text, "attributes": response.ava, "authn_context": class_ref,
            "authorities": authorities, "issuer": response.issuer()}


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rs256_verified_claims(token: str, jwks: dict) -> dict:
    """The claims of an RS256 JWT whose signature one of `jwks` makes, checked with `cryptography` alone:
    a second implementation beside the one (joserfc) that signed it and the one (authlib) that read it."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(_b64(header_b64))
    assert header["alg"] == "RS256", header
    jwk = next(key for key in jwks["keys"] if key["kid"] == header["kid"])
    public = rsa.RSAPublicNumbers(int.from_bytes(_b64(jwk["e"]), "big"), int.from_bytes(_b64(jwk["n"]), "big"))
    public.public_key().verify(_b64(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(),
                               hashes.SHA256())  # raises InvalidSignature
    return json.loads(_b64(payload_b64))
