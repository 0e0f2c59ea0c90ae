"""SSO applications signing users in through the gateway's OpenID Connect provider, end to end: a relying
party made with authlib's client (tests/sso_clients.py) on loopback, and headless Chromium going through
the whole redirect flow and the user portal's sign-in pages. Then the provider attacked through its
endpoints: a redirect URI not registered, no PKCE, a code redeemed twice, by another application, with
a wrong verifier or secret, a finished sign-in used again, a tampered ID token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.starlette_client import OAuth
from cryptography.exceptions import InvalidSignature
from joserfc.errors import BadSignatureError
from playwright.async_api import BrowserContext, Page, expect

from fault_tools import eventually
from mfaplane_devstack.supervisor import free_port
from portal_flows import PASSWORD, SHOWN_SECRETS, STEP, code_now, new_user, ok, problem, set_up
from portal_flows import sign_in as api_sign_in
from sso_clients import oidc_relying_party, rs256_verified_claims, serving

pytestmark = pytest.mark.slow
MFA = "https://refeds.org/profile/mfa"
SINGLE_FACTOR = "https://refeds.org/profile/sfa"


@dataclass(frozen=True)
class App:
    id: str
    secret: str
    url: str  # the relying party's base URL

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"


async def register_app(stack, admin: httpx.AsyncClient, mfa: bool, port: int) -> App:
    app_id = ok(await admin.post("/v1/systems", json={"name": f"Wiki {uuid.uuid4().hex[:6]}",
                                                      "kind": "sso_application"}))["id"]
    ok(await admin.put(f"/v1/systems/{app_id}/mfa", json={"enabled": mfa}))
    url = f"http://127.0.0.1:{port}"
    ok(await admin.put(f"/v1/systems/{app_id}/sign-in",
                       json={"protocol": "oidc", "redirect_uris": [f"{url}/callback"]}))
    secret = stack.create_api_key("sso_client", "wiki client secret", app_id)
    SHOWN_SECRETS.append(secret)
    return App(app_id, secret, url)


@pytest.fixture
async def application(stack, admin) -> AsyncIterator:
    """Registers an application and serves its relying party while the test runs: `await application(mfa=...)`."""
    with ExitStack() as running:
        async def start(mfa: bool = True) -> App:
            port = free_port()
            app = await register_app(stack, admin, mfa, port)
            running.enter_context(serving(oidc_relying_party(
                f"{stack.url('gateway')}/.well-known/openid-configuration", app.id, app.secret), port))
            return app

        yield start


async def enrolled_user(admin, portal, clock) -> tuple[str, str, str]:
    user_id, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await api_sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)  # the setup's code is used up
    return user_id, email, key


async def sign_in_to(page: Page, app: App, email: str) -> None:
    """From the application's login to the user portal's sign-in page, then email and password."""
    await page.goto(f"{app.url}/login")
    await expect(page.get_by_role("heading", name=re.compile("^Sign in to Wiki"))).to_be_visible()
    assert urlsplit(page.url).path == "/portal/"
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")


async def back_at_the_application(page: Page, app: App) -> dict:
    await page.wait_for_url(f"{app.redirect_uri}?*")
    return json.loads(await page.locator("body").inner_text())


async def recorded_sign_ins(auditor: httpx.AsyncClient, user_id: str, count: int) -> list[dict]:
    """The user's ApplicationSignInDecided events as the audit export has them, once `count` are there."""
    async def exported() -> list[dict]:
        response = await auditor.get("/v1/audit/events", params={"principal_id": user_id,
                                                                 "type": "ApplicationSignInDecided"})
        return [json.loads(line)["envelope"]["payload"] for line in response.text.splitlines() if line]

    return await eventually(exported, 10, f"{count} application sign-ins in the audit export",
                            done=lambda events: len(events) >= count)


async def test_an_enrolled_user_signs_in_with_a_code_and_a_replayed_code_is_refused(
        stack, admin, portal, gateway_as, clock, application, browser: BrowserContext) -> None:
    app = await application(mfa=True)
    user_id, email, key = await enrolled_user(admin, portal, clock)
    page = await browser.new_page()

    await sign_in_to(page, app, email)
    await expect(page.get_by_role("heading", name="Enter your verification code")).to_be_visible()
    code = code_now(key, clock)
    await page.get_by_label("Verification code").fill(code)
    await page.get_by_role("button", name="Verify").click()
    signed_in = await back_at_the_application(page, app)
    assert signed_in["claims"]["sub"] == user_id and signed_in["claims"]["email"] == email
    assert signed_in["claims"]["acr"] == MFA and signed_in["claims"]["amr"] == ["pwd", "otp", "mfa"]
    assert signed_in["userinfo"] == {"sub": user_id, "email": email, "name": "Test User"}
    jwks = ok(await httpx.AsyncClient().get(f"{stack.url('gateway')}/oidc/jwks"))
    verified = rs256_verified_claims(signed_in["id_token"], jwks)
    assert verified["aud"] == [app.id] and verified["iss"] == stack.url("gateway") and verified["acr"] == MFA

    # The same code again, in another sign-in to the application: refused.
    await sign_in_to(page, app, email)
    await page.get_by_label("Verification code").fill(code)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_text("This code was just used")).to_be_visible()
    clock.advance(STEP)
    await page.get_by_label("Verification code").fill(code_now(key, clock))
    await page.get_by_role("button", name="Verify").click()
    assert (await back_at_the_application(page, app))["claims"]["acr"] == MFA

    events = await recorded_sign_ins(gateway_as("auditor"), user_id, 2)
    assert [(e["system_id"], e["protocol"], e["outcome"], e["reason"], e["mfa_used"]) for e in events] == [
        (app.id, "oidc", "signed_in", "code_verified", True)] * 2


async def test_an_application_with_mfa_off_asks_no_code_and_says_so_in_the_token(
        admin, portal, gateway_as, clock, application, browser: BrowserContext) -> None:
    app = await application(mfa=False)
    user_id, email, _ = await enrolled_user(admin, portal, clock)
    page = await browser.new_page()
    await sign_in_to(page, app, email)
    signed_in = await back_at_the_application(page, app)
    assert signed_in["claims"]["acr"] == SINGLE_FACTOR and signed_in["claims"]["amr"] == ["pwd"]
    events = await recorded_sign_ins(gateway_as("auditor"), user_id, 1)
    assert [(e["outcome"], e["reason"], e["mfa_used"]) for e in events] == [
        ("signed_in", "mfa_not_enabled_on_application", False)]


async def test_a_user_in_enrollment_gets_the_setup_prompt_and_a_locked_out_user_is_refused_with_the_reason(
        admin, gateway_as, clock, application, browser: BrowserContext) -> None:
    app = await application(mfa=True)
    enrolling_id, enrolling = await new_user(admin, enrollment_days=7)
    page = await browser.new_page()
    await sign_in_to(page, app, enrolling)
    await expect(page.get_by_role("heading", name="Set up multi-factor authentication")).to_be_visible()
    await page.get_by_role("button", name="Not now").click()
    assert (await back_at_the_application(page, app))["claims"]["amr"] == ["pwd"]

    locked_id, locked = await new_user(admin, enrollment_days=1)
    clock.advance(timedelta(days=2))
    await sign_in_to(page, app, locked)
    await expect(page.get_by_role("heading", name="You are locked out")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("Your MFA enrollment period has ended")
    assert urlsplit(page.url).path == "/portal/"
    auditor = gateway_as("auditor")
    assert [(e["outcome"], e["reason"]) for e in await recorded_sign_ins(auditor, enrolling_id, 1)] == [
        ("signed_in", "mfa_not_set_up")]
    assert [(e["outcome"], e["reason"]) for e in await recorded_sign_ins(auditor, locked_id, 1)] == [
        ("refused", "locked_out")]


# -- the provider attacked, through its endpoints (no browser) ------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_params(app: App, challenge: str, **changes: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": app.id, "redirect_uri": app.redirect_uri, "scope": "openid email",
            "state": "s-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256", **changes}


async def code_for(gateway: httpx.AsyncClient, portal: httpx.AsyncClient, app: App, email: str,
                   challenge: str) -> str:
    """The code the application gets back for `email` (an application with MFA off: password only)."""
    started = await gateway.get("/oidc/authorize", params=authorization_params(app, challenge))
    assert started.status_code == 303, started.text
    token = parse_qs(urlsplit(started.headers["location"]).query)["sign_in"][0]
    answer = ok(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                               "application_sign_in": token}))
    assert answer["session"] is None, "a sign-in to an application opens no portal session"
    back = urlsplit(answer["redirect_to"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == app.redirect_uri
    query = parse_qs(back.query)
    assert query["state"] == ["s-1"]
    return query["code"][0]


def redeem(gateway: httpx.AsyncClient, app: App, code: str, verifier: str, secret: str | None = None):
    return gateway.post("/oidc/token", auth=(app.id, secret or app.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri, "code_verifier": verifier})


async def test_an_authorization_request_to_a_redirect_uri_not_registered_or_without_pkce_is_refused(
        stack, admin) -> None:
    app = await register_app(stack, admin, mfa=True, port=free_port())
    _, challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        for redirect_uri in ("http://127.0.0.1:1/callback", f"{app.redirect_uri}/", f"{app.redirect_uri}?x=1"):
            refused = await gateway.get("/oidc/authorize", params=authorization_params(app, challenge,
                                                                                       redirect_uri=redirect_uri))
            problem(refused, 400, "invalid_authorization_request")
            assert "location" not in refused.headers  # never sent to an address not registered
        problem(await gateway.get("/oidc/authorize", params=authorization_params(app, challenge,
                                                                                 client_id=str(uuid.uuid4()))),
                400, "invalid_authorization_request")
        for missing in ({"code_challenge": ""}, {"code_challenge_method": "plain"}):
            refused = await gateway.get("/oidc/authorize", params=authorization_params(app, challenge, **missing))
            assert refused.status_code == 302
            back = parse_qs(urlsplit(refused.headers["location"]).query)
            assert back["error"] == ["invalid_request"] and back["state"] == ["s-1"]
        async with gateway.stream("GET", "/oidc/authorize", params=authorization_params(app, challenge)) as started:
            assert started.status_code == 303


async def test_a_code_is_good_once_for_its_application_with_its_verifier_and_a_second_try_revokes_the_token(
        stack, admin, portal) -> None:
    app = await register_app(stack, admin, mfa=False, port=free_port())
    other = await register_app(stack, admin, mfa=False, port=free_port())
    _, email = await new_user(admin)
    verifier, challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        code = await code_for(gateway, portal, app, email, challenge)
        assert (await redeem(gateway, app, code, verifier, secret=other.secret)).json()["error"] == "invalid_client"
        assert (await redeem(gateway, app, code, verifier, secret="mfp_not-a-key")).status_code == 401
        other_code = await code_for(gateway, portal, other, email, challenge)
        assert (await redeem(gateway, other, code, verifier)).json()["error"] == "invalid_grant"  # not its code
        assert (await redeem(gateway, other, other_code, "x" * 43)).json()["error"] == "invalid_grant"  # wrong verifier

        tokens = ok(await redeem(gateway, app, code, verifier))
        assert tokens["token_type"] == "Bearer" and "id_token" in tokens
        userinfo = await gateway.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert ok(userinfo)["email"] == email
        again = await redeem(gateway, app, code, verifier)
        assert again.json()["error"] == "invalid_grant"
        revoked = await gateway.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert revoked.status_code == 401 and revoked.json() == {"error": "invalid_token"}


async def test_a_finished_sign_in_cannot_be_used_again_and_opens_no_portal_session(stack, admin, portal,
                                                                                     clock) -> None:
    app = await register_app(stack, admin, mfa=True, port=free_port())
    _, email, key = await enrolled_user(admin, portal, clock)
    _, challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        started = await gateway.get("/oidc/authorize", params=authorization_params(app, challenge))
    token = parse_qs(urlsplit(started.headers["location"]).query)["sign_in"][0]
    assert ok(await portal.post("/v1/portal/application-sign-in", json={"application_sign_in": token}))["mfa_enabled"]
    step_one = ok(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                                 "application_sign_in": token}))
    assert step_one["outcome"] == "mfa_required"
    answer = ok(await portal.post("/v1/portal/verify", json={"challenge": step_one["challenge"],
                                                             "code": code_now(key, clock)}))
    assert answer["session"] is None and answer["redirect_to"].startswith(app.redirect_uri)
    problem(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                          "application_sign_in": token}),
            400, "application_sign_in_expired")
    problem(await portal.post("/v1/admin-portal/sign-in", json={"email": email, "password": PASSWORD,
                                                                "application_sign_in": token}),
            400, "not_for_applications")


async def test_a_tampered_id_token_is_refused_by_the_application_and_by_a_second_library(stack, admin,
                                                                                          portal) -> None:
    app = await register_app(stack, admin, mfa=False, port=free_port())
    _, email = await new_user(admin)
    verifier, challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        tokens = ok(await redeem(gateway, app, await code_for(gateway, portal, app, email, challenge), verifier))
        jwks = ok(await gateway.get("/oidc/jwks"))
    header, payload, signature = tokens["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "email": "root@example.com"}).encode()).rstrip(b"=")
    tampered = f"{header}.{forged.decode()}.{signature}"
    assert rs256_verified_claims(tokens["id_token"], jwks)["email"] == email
    with pytest.raises(InvalidSignature):
        rs256_verified_claims(tampered, jwks)
    oauth = OAuth()
    oauth.register("mfaplane", client_id=app.id, client_secret=app.secret,
                   server_metadata_url=f"{stack.url('gateway')}/.well-known/openid-configuration")
    with pytest.raises(BadSignatureError):
        await oauth.mfaplane.parse_id_token({**tokens, "id_token": tampered}, nonce="n-1")
    assert (await oauth.mfaplane.parse_id_token(tokens, nonce="n-1"))["email"] == email


async def test_a_user_who_must_set_up_now_sets_up_on_the_way_and_arrives_with_mfa(stack, admin, portal,
                                                                                 clock) -> None:
    app = await register_app(stack, admin, mfa=True, port=free_port())
    _, email = await new_user(admin, enrollment_days=None)
    verifier, challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        started = await gateway.get("/oidc/authorize", params=authorization_params(app, challenge))
        token = parse_qs(urlsplit(started.headers["location"]).query)["sign_in"][0]
        step_one = ok(await portal.post("/v1/portal/sign-in", json={"email": email, "password": PASSWORD,
                                                                     "application_sign_in": token}))
        assert step_one["outcome"] == "setup_required"
        _, answer = await set_up(portal, step_one["challenge"], clock)
        assert answer["session"] is None and len(answer["recovery_codes"]) == 10
        code = parse_qs(urlsplit(answer["redirect_to"]).query)["code"][0]
        tokens = ok(await redeem(gateway, app, code, verifier))
        jwks = ok(await gateway.get("/oidc/jwks"))
    assert rs256_verified_claims(tokens["id_token"], jwks)["amr"] == ["pwd", "otp", "mfa"]
