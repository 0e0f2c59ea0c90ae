"""SSO applications signing users in through the gateway's SAML 2.0 identity provider, end to end: a service
provider made with pysaml2 (tests/sso_clients.py) on loopback, and headless Chromium from the service
provider's login through the user portal's sign-in back to its ACS URL. Then the identity provider
attacked: a request from an entity id or to an ACS URL not registered, a response taken twice, replayed,
tampered with, or posted to another application.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, expect
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.response import UnsolicitedResponse
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.sigver import MissingKey, SignatureError
from starlette.applications import Starlette

from mfaplane_devstack.supervisor import free_port
from portal_flows import PASSWORD, code_now, new_user, ok, problem
from sso_clients import accepted, authn_request_url, saml_service_provider, serving
from test_sso_oidc import MFA, SINGLE_FACTOR, enrolled_user, recorded_sign_ins

pytestmark = pytest.mark.slow
MAIL = "mail"  # the friendly name pysaml2's attribute map gives urn:oid:0.9.2342.19200300.100.1.3


@dataclass
class ServiceProvider:
    id: str
    url: str
    idp_metadata: str
    app: Starlette  # the service provider's web app, to serve
    client: Saml2Client
    outstanding: dict

    @property
    def entity_id(self) -> str:
        return f"{self.url}/saml/metadata"


async def register(stack, admin: httpx.AsyncClient, mfa: bool) -> ServiceProvider:
    app_id = ok(await admin.post("/v1/systems", json={"name": f"Expenses {uuid.uuid4().hex[:6]}",
                                                      "kind": "sso_application"}))["id"]
    ok(await admin.put(f"/v1/systems/{app_id}/mfa", json={"enabled": mfa}))
    url = f"http://127.0.0.1:{free_port()}"
    ok(await admin.put(f"/v1/systems/{app_id}/sign-in", json={
        "protocol": "saml", "entity_id": f"{url}/saml/metadata", "acs_urls": [f"{url}/acs"]}))
    settings = ok(await admin.get(f"/v1/systems/{app_id}/sign-in"))
    metadata = await httpx.AsyncClient().get(settings["saml_metadata_url"])
    assert metadata.headers["content-type"].startswith("application/samlmetadata+xml")
    app, client = saml_service_provider(url, metadata.text)
    return ServiceProvider(app_id, url, metadata.text, app, client, {})


async def response_for(gateway: httpx.AsyncClient, portal: httpx.AsyncClient, provider: ServiceProvider,
                       email: str) -> str:
    """The SAMLResponse the identity provider posts back for `email` (an application with MFA off)."""
    started = await gateway.get(authn_request_url(provider.client, provider.outstanding))
    assert started.status_code == 303, started.text
    token = parse_qs(urlsplit(started.headers["location"]).query)["sign_in"][0]
    answer = ok(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                               "application_sign_in": token}))
    # whoever sent the AuthnRequest knows `token`: the signed response is never served under it
    problem(await gateway.get(f"/saml/{provider.id}/respond/{token}"), 400, "application_sign_in_expired")
    page = await gateway.get(answer["redirect_to"])
    assert page.status_code == 200 and f'action="{provider.url}/acs"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    problem(await gateway.get(answer["redirect_to"]), 400, "application_sign_in_expired")  # served once
    return re.search(r'name="SAMLResponse" value="([^"]+)"', page.text).group(1)


async def test_an_enrolled_user_signs_in_with_a_code_and_the_assertion_says_mfa_was_used(
        stack, admin, portal, gateway_as, clock, browser: BrowserContext) -> None:
    provider = await register(stack, admin, mfa=True)
    user_id, email, key = await enrolled_user(admin, portal, clock)
    with serving(provider.app, int(urlsplit(provider.url).port)):
        page = await browser.new_page()
        await page.goto(f"{provider.url}/login")
        await expect(page.get_by_role("heading", name=re.compile("^Sign in to Expenses"))).to_be_visible()
        await page.get_by_label("Email address").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_label("Password").press("Enter")
        await page.get_by_label("Verification code").fill(code_now(key, clock))
        await page.get_by_role("button", name="Verify").click()
        await page.wait_for_url(f"{provider.url}/acs")
        signed_in = json.loads(await page.locator("body").inner_text())
    assert signed_in["name_id"] == user_id and signed_in["attributes"][MAIL] == [email]
    assert signed_in["authn_context"] == MFA and signed_in["relay_state"] == "from-the-app"
    assert signed_in["issuer"] == f"{stack.url('gateway')}/saml/{provider.id}"
    events = await recorded_sign_ins(gateway_as("auditor"), user_id, 1)
    assert [(e["protocol"], e["outcome"], e["reason"], e["mfa_used"]) for e in events] == [
        ("saml", "signed_in", "code_verified", True)]


async def test_a_response_is_accepted_once_by_its_own_service_provider_and_never_once_tampered_with(
        stack, admin, portal) -> None:
    provider = await register(stack, admin, mfa=False)
    other = await register(stack, admin, mfa=False)
    _, email = await new_user(admin)
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        response = await response_for(gateway, portal, provider, email)
    xml = base64.b64decode(response).decode()
    assert xml.count('Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"') == 2  # response, assertion
    assert "rsa-sha1" not in xml and "xmldsig#sha1" not in xml
    tampered = base64.b64encode(xml.replace(email, "root@example.com").encode()).decode()
    with pytest.raises(SignatureError):
        accepted(provider.client, tampered, dict(provider.outstanding))
    with pytest.raises(MissingKey):  # another application's service provider trusts another identity provider
        accepted(other.client, response, {**other.outstanding, **provider.outstanding})
    _, impostor = saml_service_provider("http://127.0.0.1:9", provider.idp_metadata)  # trusts it, is not its audience
    with pytest.raises(ValueError, match="no assertion for this service provider"):
        accepted(impostor, response, dict(provider.outstanding))
    answer = accepted(provider.client, response, provider.outstanding)
    assert answer["attributes"][MAIL] == [email] and answer["authn_context"] == SINGLE_FACTOR
    with pytest.raises(UnsolicitedResponse):
        accepted(provider.client, response, provider.outstanding)  # replayed: its request was answered


async def test_a_request_from_an_entity_id_or_to_an_acs_url_not_registered_is_refused(stack, admin) -> None:
    provider = await register(stack, admin, mfa=True)
    stranger = await register(stack, admin, mfa=True)
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        # the stranger's request, sent to this application's endpoint
        url = authn_request_url(stranger.client, {}).replace(f"/saml/{stranger.id}/", f"/saml/{provider.id}/")
        refused = await gateway.get(url)
        problem(refused, 400, "invalid_saml_request")
        assert "location" not in refused.headers
        problem(await gateway.get(f"/saml/{provider.id}/sso"), 400, "invalid_saml_request")
        problem(await gateway.get(f"/saml/{uuid.uuid4()}/sso?SAMLRequest=x"), 404, "application_not_found")
        problem(await gateway.get(f"/saml/{provider.id}/respond/{'x' * 43}"), 400, "application_sign_in_expired")


async def test_a_request_by_http_post_is_taken_and_an_oversized_relay_state_is_not(stack, admin) -> None:
    provider = await register(stack, admin, mfa=True)
    idp = next(iter(provider.client.metadata.identity_providers()))
    _, form = provider.client.prepare_for_authenticate(entityid=idp, relay_state="from-the-app",
                                                       binding=BINDING_HTTP_POST)
    saml_request = re.search(r'name="SAMLRequest" value="([^"]+)"', form["data"]).group(1)
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        started = await gateway.post(f"/saml/{provider.id}/sso", data={"SAMLRequest": saml_request,
                                                                        "RelayState": "from-the-app"})
        assert started.status_code == 303 and "sign_in=" in started.headers["location"]
        problem(await gateway.post(f"/saml/{provider.id}/sso", data={"SAMLRequest": saml_request,
                                                                      "RelayState": "x" * 81}),
                400, "invalid_saml_request")


async def test_a_request_that_inflates_past_its_bound_is_refused_before_it_is_parsed(stack, admin) -> None:
    provider = await register(stack, admin, mfa=False)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"<samlp:AuthnRequest>" + b"<a/>" * 3_000_000) + deflater.flush()
    message = base64.b64encode(bomb).decode()
    assert len(message) < 16 * 1024  # small on the wire, 12 MB once inflated
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        refused = await gateway.get(f"/saml/{provider.id}/sso", params={"SAMLRequest": message})
        assert "inflates past" in problem(refused, 400, "invalid_saml_request")["detail"]
        assert (await gateway.get("/readyz")).status_code == 200


async def test_a_request_asking_for_mfa_gets_a_code_or_a_refusal_whatever_the_switch(stack, admin, portal,
                                                                                     clock) -> None:
    provider = await register(stack, admin, mfa=False)
    _, enrolled, _ = await enrolled_user(admin, portal, clock)
    _, without_mfa = await new_user(admin)
    idp = next(iter(provider.client.metadata.identity_providers()))
    asking = RequestedAuthnContext(authn_context_class_ref=[AuthnContextClassRef(text=MFA)], comparison="exact")

    async def step_one(email: str) -> httpx.Response:
        _, info = provider.client.prepare_for_authenticate(entityid=idp, binding=BINDING_HTTP_REDIRECT,
                                                           requested_authn_context=asking)
        async with httpx.AsyncClient() as browser:
            started = await browser.get(dict(info["headers"])["Location"])
        token = parse_qs(urlsplit(started.headers["location"]).query)["sign_in"][0]
        return await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                              "application_sign_in": token})

    assert ok(await step_one(enrolled))["outcome"] == "mfa_required"
    problem(await step_one(without_mfa), 403, "mfa_requested_by_application")
