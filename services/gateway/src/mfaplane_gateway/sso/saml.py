"""The SAML 2.0 identity provider: per application, its metadata, single sign-on over the HTTP-Redirect
and HTTP-POST bindings, and signed responses posted back to the service provider.

The protocol is pysaml2's (its Server parses AuthnRequests and makes signed responses with Debian's
xmlsec1); this module gives it the application as service-provider metadata made from its settings.
Each application has its own endpoints, `/saml/{id}/...`, and so its own identity-provider entity id
(`{PUBLIC_URL}/saml/{id}`), as Okta and JumpCloud do: a request names its application by where it is
sent, and an assertion for one application is never one another would accept (Audience).

A request must come from the application's registered entity id and ask for one of its registered
ACS URLs (or none: the first is used); anything else is a problem+json to the browser, never posted
on, and one that inflates past 16 KiB is refused before pysaml2 reads it. A RequestedAuthnContext that
admits only MFA makes the sign-in ask for a code whatever the application's switch (sign_ins.py). The
assertion and the response are both signed; the assertion's AuthnContextClassRef says
whether a code was checked (config.py), its Audience is the application, its Recipient the ACS URL.
The signed response waits, once, on the pending sign-in, for the page that posts it (`respond`), under a
token of its own that only the browser that signed in learns.
"""

from __future__ import annotations

import base64
import secrets
import tempfile
import zlib
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.forwarding import ForwarderDep
from mfaplane_gateway.edge.rate_limits import CHALLENGE_LIMIT
from mfaplane_gateway.sso import pending
from mfaplane_gateway.sso.applications import Application, application
from mfaplane_gateway.sso.config import MFA, SignInProof, SSOConfig, SSODep
from mfaplane_gateway.sso.pending import ApplicationSignIn, PendingSignIn
from mfaplane_gateway.sso.signing_keys import SigningKey

# Described by each application's metadata (and docs/sso.md), not by the /v1 API's OpenAPI.
router = APIRouter(include_in_schema=False)
ASSERTION_MINUTES = 5
MAX_REQUEST_BYTES = 16 * 1024  # an AuthnRequest is a few hundred bytes
MAX_RELAY_STATE_BYTES = 80
EMAIL = "urn:oid:0.9.2342.19200300.100.1.3"  # eduPerson/X.500 names, as most service providers map them
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"


class KeyFiles:
    """xmlsec1 reads keys and certificates from files: the active key's, in a folder only this process reads,
    written once per process (`of`)."""

    _written: dict[str, KeyFiles] = {}

    def __init__(self, key: SigningKey) -> None:
        folder = Path(tempfile.mkdtemp(prefix="mfaplane-saml-"))
        self.key, self.cert = folder / "key.pem", folder / "cert.pem"
        for path, content in ((self.key, key.pem), (self.cert, key.certificate_pem)):
            path.touch(mode=0o600)
            path.write_bytes(content)

    @classmethod
    def of(cls, key: SigningKey) -> KeyFiles:
        if key.kid not in cls._written:
            cls._written[key.kid] = cls(key)
        return cls._written[key.kid]


class IdentityProvider:
    def __init__(self, sso: SSOConfig, app: Application) -> None:
        self.sso, self.app = sso, app
        files = KeyFiles.of(sso.keys.active)
        self.entity_id = f"{sso.issuer}/saml/{app.id}"
        self.config = IdPConfig().load({
            "entityid": self.entity_id,
            "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
            "key_file": str(files.key), "cert_file": str(files.cert),
            "metadata": {"inline": [_service_provider_metadata(app)]},
            "service": {"idp": {
                "endpoints": {"single_sign_on_service": [(f"{self.entity_id}/sso", BINDING_HTTP_REDIRECT),
                                                         (f"{self.entity_id}/sso", BINDING_HTTP_POST)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "want_authn_requests_signed": False,
                "policy": {"default": {"lifetime": {"minutes": ASSERTION_MINUTES}, "name_form": NAME_FORMAT_URI,
                                       "attribute_restrictions": None}},
            }},
        })

    @cached_property
    def server(self) -> Server:
        return Server(config=self.config)

    def metadata(self) -> str:
        return create_metadata_string(None, config=self.config)

    def checked_request(self, message: str, binding: str) -> dict[str, Any]:
        """The AuthnRequest's id, the ACS URL to answer at and whether it asks for MFA, once it is this
        application's."""
        _bounded(message, binding)
        try:
            request = self.server.parse_authn_request(message, binding).message
        except Exception as error:  # pysaml2 raises many kinds for a malformed or unsigned-when-needed request
            raise _refused(f"The SAML request cannot be read ({type(error).__name__}).") from None
        issuer = request.issuer.text if request.issuer is not None else None
        if issuer != self.app.entity_id:
            raise _refused("The SAML request is not from this application's entity id.")
        acs = request.assertion_consumer_service_url or self.app.acs_urls[0]
        if not self.app.returns_to(acs):
            raise _refused("The SAML request asks for an assertion consumer service URL that is not registered.")
        return {"id": request.id, "acs_url": acs, "return_to": acs, "mfa_requested": _asks_for_mfa(request)}

    def signed_response(self, sign_in: PendingSignIn, proof: SignInProof) -> str:
        """The base64 of the signed Response, for the HTTP-POST binding."""
        response = self.server.create_authn_response(
            identity={EMAIL: [proof.email], DISPLAY_NAME: [proof.name]},
            in_response_to=sign_in.request["id"], destination=sign_in.request["acs_url"],
            sp_entity_id=self.app.entity_id,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=proof.subject, sp_name_qualifier=self.app.entity_id,
                           name_qualifier=self.entity_id),
            authn={"class_ref": proof.acr, "authn_auth": self.entity_id},
            sign_assertion=True, sign_response=True,
            sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)  # pysaml2's defaults are SHA-1
        return base64.b64encode(str(response).encode()).decode()


def _bounded(message: str, binding: str) -> None:
    """Refuses a request that would inflate past MAX_REQUEST_BYTES before pysaml2, which inflates without a
    bound, sees it: a few kilobytes of DEFLATE can hold gigabytes of XML."""
    if len(message) > MAX_REQUEST_BYTES:
        raise _refused(f"The SAML request is longer than {MAX_REQUEST_BYTES} characters.")
    try:
        inflater = zlib.decompressobj(-15)
        inflated = inflater.decompress(base64.b64decode(message), MAX_REQUEST_BYTES + 1)
    except (ValueError, zlib.error):
        if binding == BINDING_HTTP_POST:
            return  # HTTP-POST may carry the XML itself, base64 only: bounded by its length
        raise _refused("The SAML request is not base64 of DEFLATE data.") from None
    if len(inflated) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
        raise _refused(f"The SAML request inflates past {MAX_REQUEST_BYTES} bytes.")


def _asks_for_mfa(request: Any) -> bool:
    """Whether the request's RequestedAuthnContext admits nothing weaker than MFA (SAML core 3.3.2.2.1):
    the sign-in then asks for a code, or is refused, whatever the application's switch says."""
    requested = request.requested_authn_context
    if requested is None or requested.comparison not in (None, "exact", "minimum"):
        return False
    classes = {ref.text.strip() for ref in requested.authn_context_class_ref if ref.text}
    return classes == {MFA}


def _service_provider_metadata(app: Application) -> str:
    assert app.entity_id is not None  # a SAML application's sign-in settings name it
    services = "".join(f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location={quoteattr(url)} '
                       f'index="{index}"/>' for index, url in enumerate(app.acs_urls))
    return (f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID={quoteattr(app.entity_id)}>'
            f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{services}'
            '</md:SPSSODescriptor></md:EntityDescriptor>')


def _refused(detail: str) -> Rejected:
    return Rejected("invalid_saml_request", detail, Refusal.INVALID)


async def _identity_provider(sso: SSOConfig, forward: Any, application_id: str) -> IdentityProvider:
    app = await application(forward, application_id, "saml")
    if app is None:
        raise Rejected("application_not_found", "No SSO application signs in with SAML here under this id.",
                       Refusal.NOT_FOUND)
    return IdentityProvider(sso, app)


@router.get("/saml/{application_id}/metadata", dependencies=[CHALLENGE_LIMIT])
async def metadata(application_id: str, sso: SSODep, forward: ForwarderDep) -> Response:
    idp = await _identity_provider(sso, forward, application_id)
    return Response(idp.metadata(), media_type="application/samlmetadata+xml")


@router.api_route("/saml/{application_id}/sso", methods=["GET", "POST"], dependencies=[CHALLENGE_LIMIT])
async def single_sign_on(application_id: str, request: Request, sso: SSODep, runtime: RuntimeDep,
                         forward: ForwarderDep) -> Response:
    """An AuthnRequest, by HTTP-Redirect (query) or HTTP-POST (form): checked, kept, and the browser sent to sign in."""
    idp = await _identity_provider(sso, forward, application_id)
    params, binding = await _message(request)
    if "SAMLRequest" not in params:
        raise _refused("No SAMLRequest.")
    relay_state = params.get("RelayState")
    if relay_state is not None and len(relay_state.encode()) > MAX_RELAY_STATE_BYTES:
        raise _refused(f"RelayState is longer than {MAX_RELAY_STATE_BYTES} bytes (SAML bindings, section 3.4.3).")
    checked = {**await anyio.to_thread.run_sync(idp.checked_request, params["SAMLRequest"], binding),
               "relay_state": relay_state}
    token = await pending.keep(runtime.pool, PendingSignIn(idp.app.id, "saml", checked), runtime.clock.now())
    return RedirectResponse(sso.sign_in_page(token), status_code=303)


async def _message(request: Request) -> tuple[dict[str, str], str]:
    if request.method == "GET":
        return dict(request.query_params), BINDING_HTTP_REDIRECT
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Rejected("unsupported_media_type", "Post the SAML request as application/x-www-form-urlencoded.",
                       Refusal.UNSUPPORTED_MEDIA_TYPE)
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"))), BINDING_HTTP_POST


async def response_page(runtime: Runtime, sign_in: ApplicationSignIn, proof: SignInProof) -> str:
    """Signs the response now (xmlsec1 runs off the event loop), keeps it for the page that posts it, and says
    where that page is: under a new token, which only the browser that signed in learns (whoever sent the
    AuthnRequest knows the pending sign-in's token)."""
    idp = IdentityProvider(sign_in.sso, sign_in.application)
    signed = await anyio.to_thread.run_sync(idp.signed_response, sign_in.pending, proof)
    respond_token = await pending.keep_response(runtime.pool, sign_in.token, signed, runtime.clock.now())
    return f"{sign_in.sso.issuer}/saml/{sign_in.application.id}/respond/{respond_token}"


@router.get("/saml/{application_id}/respond/{token}", dependencies=[CHALLENGE_LIMIT])
async def respond(application_id: str, token: str, runtime: RuntimeDep) -> HTMLResponse:
    """The page that posts the signed response to the ACS URL; served once per sign-in."""
    sign_in, response = await pending.take_response(runtime.pool, token, application_id, runtime.clock.now())
    acs, relay_state = sign_in.request["acs_url"], sign_in.request.get("relay_state")
    nonce = secrets.token_urlsafe(16)
    fields = f'<input type="hidden" name="SAMLResponse" value={quoteattr(response)}>'
    if relay_state:
        fields += f'<input type="hidden" name="RelayState" value={quoteattr(relay_state)}>'
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signing you in</title></head><body>'
            f'<form method="post" action={quoteattr(acs)}>{fields}<p>Signing you in to the application…</p>'
            f'<button type="submit">Continue</button></form>'
            f'<script nonce="{nonce}">document.forms[0].submit()</script></body></html>')
    # No form-action: the form's action is the registered ACS URL, and Chromium would also hold an ACS that
    # redirects to another origin to it.
    return HTMLResponse(page, headers={
        "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; "
                                   "frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
