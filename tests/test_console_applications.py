"""An SSO application set up end to end from the admin console, in headless Chromium.

An admin registers an application, gives it OpenID Connect redirect URIs (an http one refused with the
reason, and nothing saved), is shown what the application's team needs, makes its client secret, then
switches it to SAML 2.0. What the form saved is what the API has. Each step's screenshot is saved under
test-artifacts/console-applications/.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Locator, expect

from portal_flows import PASSWORD, SHOWN_SECRETS, ok
from test_console_systems import row_action, search_systems, system_row
from test_reference_portals import Steps, set_up_mfa, sign_in

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console-applications"
WIKI = "https://wiki.example.com"


def detail(dialog: Locator, term: str) -> Locator:
    """The value a dialog's list of details gives for `term`."""
    return dialog.locator(f"xpath=.//dt[normalize-space()='{term}']/following-sibling::dd[1]")


async def redeem_made_up_code(gateway: str, client_id: str, client_secret: str, redirect_uri: str) -> str:
    """The token endpoint's OAuth error for a code it never issued, from this client."""
    async with httpx.AsyncClient(base_url=gateway) as relying_party:
        answer = await relying_party.post("/oidc/token", auth=(client_id, client_secret), data={
            "grant_type": "authorization_code", "code": "made-up", "redirect_uri": redirect_uri,
            "code_verifier": "v" * 43})
    return answer.json()["error"]


async def test_admin_sets_up_an_sso_application_with_oidc_then_saml(stack, admin, console, clock,
                                                                    browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    name = f"wiki-{tag}"
    admin_email = f"applications-{tag}@example.com"
    ok(await console.post("/v1/admins", json={"email": admin_email, "name": "Applications admin",
                                              "password": PASSWORD}))

    page = steps.watch(await browser.new_page())
    await sign_in(page, f"{gateway}/admin", admin_email)
    await set_up_mfa(page, clock, steps, "admin")
    await page.get_by_role("link", name="Systems and applications").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Kind").select_option(label="SSO application")
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("status").filter(has_text="Registered")).to_contain_text(f"Registered {name}")
    await search_systems(page, name)
    await expect(system_row(page, name)).to_contain_text("SSO application")
    app = await system_row(page, name).get_attribute("data-system-id")

    # OpenID Connect: a redirect URI over plain http to another host is refused, saying which and why.
    await row_action(page, name, "Sign-in settings")
    form = page.get_by_role("dialog", name=f"Sign-in settings for {name}")
    await expect(form.get_by_label("OpenID Connect")).to_be_checked()
    await expect(form.get_by_label("Entity id")).to_be_hidden()
    redirect_uris = form.get_by_label("Redirect URIs")
    await redirect_uris.fill(f"{WIKI}/callback\nhttp://example.com/cb")
    await form.get_by_role("button", name="Save settings").click()
    await expect(form.get_by_role("alert")).to_have_text(
        "Redirect URIs: \u201chttp://example.com/cb\u201d must be an https URL (http only for localhost).")
    await expect(redirect_uris).to_have_attribute("aria-invalid", "true")
    await expect(redirect_uris).to_be_focused()
    assert ok(await admin.get(f"/v1/systems/{app}/sign-in"))["settings"] is None
    await steps.shot(page, "oidc-redirect-uri-refused")

    # Saved: the client id, issuer and discovery URL for the application's team, and a client secret.
    oidc_uris = [f"{WIKI}/callback", "http://localhost:8080/callback"]
    await redirect_uris.fill("\n".join(oidc_uris))
    await form.get_by_role("button", name="Save settings").click()
    details = page.get_by_role("dialog", name=f"Sign-in details for {name}")
    await expect(detail(details, "Client id")).to_have_text(app)
    await expect(detail(details, "Issuer")).to_have_text(gateway)
    await expect(detail(details, "Discovery URL")).to_have_text(f"{gateway}/.well-known/openid-configuration")
    await expect(detail(details, "Redirect URIs")).to_have_text("".join(oidc_uris))
    assert ok(await admin.get(f"/v1/systems/{app}/sign-in"))["settings"]["redirect_uris"] == oidc_uris
    await steps.shot(page, "oidc-details")
    await details.get_by_role("button", name="Add client secret").click()
    shown = page.get_by_role("dialog", name=f"Client secret for {name}")
    await expect(shown).to_contain_text("This is the only time the secret is shown")
    secret = await shown.locator("#agent-key").inner_text()
    SHOWN_SECRETS.append(secret)
    await steps.shot(page, "client-secret-shown-once")
    await shown.get_by_role("button", name="Done").click()
    await expect(page.get_by_text(f"Client secret \u201c{name} client secret\u201d minted for {name}.")).to_be_visible()

    # The secret authenticates this application at the token endpoint: a made-up code is then refused as a
    # code, where a wrong secret is refused as the client.
    assert await redeem_made_up_code(gateway, app, secret, oidc_uris[0]) == "invalid_grant"
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert await redeem_made_up_code(gateway, app, wrong, oidc_uris[0]) == "invalid_client"

    # SAML 2.0 replaces it: the form opens on what is saved, and shows the fields of the protocol chosen.
    await row_action(page, name, "Sign-in settings")
    await expect(form.get_by_label("Redirect URIs")).to_have_value("\n".join(oidc_uris))
    await form.get_by_label("SAML 2.0").check()
    await expect(form.get_by_label("Redirect URIs")).to_be_hidden()
    await form.get_by_label("Entity id").fill(f"{WIKI}/saml/metadata")
    await form.get_by_label("ACS URLs").fill(f"{WIKI}/saml/acs\n\n{WIKI}/saml/acs-post  ")
    await form.get_by_role("button", name="Save settings").click()
    await expect(detail(details, "Entity id")).to_have_text(f"{WIKI}/saml/metadata")
    saved = ok(await admin.get(f"/v1/systems/{app}/sign-in"))
    await expect(detail(details, "Metadata URL")).to_have_text(saved["saml_metadata_url"])
    await expect(details.get_by_role("button", name="Add client secret")).to_have_count(0)
    await steps.shot(page, "saml-details")
    await details.get_by_role("button", name="Done").click()
    await expect(page.get_by_role("status").filter(has_text="Saved")).to_have_text(
        f"Saved the sign-in settings of {name} (SAML 2.0).")

    assert saved["settings"] == {
        "protocol": "saml", "redirect_uris": [], "entity_id": f"{WIKI}/saml/metadata",
        "acs_urls": [f"{WIKI}/saml/acs", f"{WIKI}/saml/acs-post"]}
    assert steps.errors == [], steps.errors
