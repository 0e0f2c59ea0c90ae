"""The reference admin console and user portal, end to end in headless Chromium (Debian's `chromium`).

An admin sets up their own admin-portal MFA in the browser and requires MFA for two users in bulk;
one user dismisses the setup prompt, later sets up MFA with the key shown on the page and signs in
with a code; the other's deadline passes on the fake clock and the portal locks them out until the
admin resets their MFA. Codes are computed like an authenticator app would, at the services' clock.
Each step's screenshot is saved under test-artifacts/reference-portals/.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portal_flows import PASSWORD, SHOWN_SECRETS, code_now, ok

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "reference-portals"
STEP = timedelta(seconds=30)


class Steps:
    """Numbered screenshots (in `folder`), and the page errors that must not happen."""

    def __init__(self, folder: Path = ARTIFACTS) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.errors: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # Refused requests (a 401 after the session ends) are expected; script errors are not.
        page.on("console", lambda message: message.type == "error" and not message.text.startswith(
            "Failed to load resource") and self.errors.append(message.text))
        return page

    async def shot(self, page: Page, name: str) -> None:
        self.count += 1
        await page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


async def sign_in(page: Page, url: str, email: str) -> None:
    await page.goto(url)
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")


async def set_up_mfa(page: Page, clock, steps: Steps, who: str) -> str:
    """On the setup page: reads the key as a person would type it, confirms a first code, keeps the codes."""
    await page.get_by_role("button", name="Set up now").click()
    await expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    await expect(page.locator(".code-timer")).to_contain_text("Codes change every 30 seconds")
    key = (await page.locator("#setup-key").inner_text()).replace(" ", "")
    SHOWN_SECRETS.append(key)
    await steps.shot(page, f"{who}-setup-qr-and-key")
    await page.get_by_label("First code from your app").fill(code_now(key, clock))
    await page.get_by_role("button", name="Confirm and finish setup").click()
    await expect(page.get_by_role("heading", name="MFA setup is complete")).to_be_visible()
    codes = await page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    SHOWN_SECRETS.extend(codes + [c.replace("-", "") for c in codes])
    await steps.shot(page, f"{who}-recovery-codes")
    await page.get_by_role("button", name=re.compile("I have stored my recovery codes")).click()
    return key


async def enter_code(page: Page, key: str, clock) -> None:
    await expect(page.get_by_role("heading", name="Enter your verification code")).to_be_visible()
    await page.get_by_label("Verification code").fill(code_now(key, clock))
    await page.get_by_role("button", name="Verify").click()


def row(page: Page, user_id: str):
    return page.locator(f"tr[data-user-id='{user_id}']")


async def new_user(admin: httpx.AsyncClient, tag: str, name: str) -> tuple[str, str]:
    email = f"{name.lower()}-{tag}@example.com"
    receipt = ok(await admin.post("/v1/users", json={"email": email, "name": f"{name} {tag}", "password": PASSWORD}))
    ok(await admin.get(f"/v1/users/{receipt['aggregate_id']}",
                       params={"consistent_with": receipt["consistency_token"]}))
    return receipt["aggregate_id"], email


async def test_the_reference_portals_are_served_with_their_key(stack, browser: BrowserContext) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as http:
        assert (await http.get("/admin")).headers["location"] == "/admin/"
        page = await http.get("/portal/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        config = ok(await http.get("/portal/config.json"))
        assert config["configured"] and config["api_base"] == "/v1"
        assert ok(await http.get("/admin/config.json")) == config
        SHOWN_SECRETS.append(config["portal_api_key"])  # public to browsers, but never in a log or message
        # The key the browser is given is a portal key: it can sign in, and nothing else.
        as_page = {"Authorization": f"Bearer {config['portal_api_key']}"}
        assert (await http.post("/v1/portal/sign-in", headers=as_page,
                                json={"email": "nobody@example.com", "password": "x"})).status_code == 401
        assert (await http.get("/v1/users", headers=as_page)).status_code == 403
        for path in ("/admin/../settings.py", "/admin/%2e%2e/settings.py", "/portal/common/..%2f..%2fsettings.py",
                     "/portal/nothing.html", "/admin/common/"):
            assert (await http.get(path)).status_code == 404, path

    # Without the setting the apps are still served, and say so.
    page = await browser.new_page()
    await page.route("**/config.json", lambda route: route.fulfill(json={"configured": False}))
    await page.goto(f"{stack.url('gateway')}/portal")
    await expect(page.get_by_role("heading", name="This portal is not configured")).to_be_visible()
    await page.goto(f"{stack.url('gateway')}/admin")
    await expect(page.get_by_role("heading", name="The admin console is not configured")).to_be_visible()


async def test_admin_requires_mfa_in_bulk_users_enroll_or_get_locked_out_and_reset(
        stack, admin, console, agent_of, clock, browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    steps = Steps()
    tag = uuid.uuid4().hex[:8]
    admin_email = f"root-{tag}@example.com"
    admin_id = ok(await console.post("/v1/admins", json={"email": admin_email, "name": "Root", "password": PASSWORD}))[
        "aggregate_id"]
    ok(await admin.post(f"/v1/admins/{admin_id}/mfa/require", json={"enrollment_days": 7}))
    alice, alice_email = await new_user(admin, tag, "Alice")
    bob, bob_email = await new_user(admin, tag, "Bob")
    registered = ok(await admin.post("/v1/systems", json={"name": f"build-{tag}", "kind": "linux"}))
    system = registered["id"]
    ok(await admin.get("/v1/systems", params={"consistent_with": registered["consistency_token"]}))

    # The admin signs in to the console and sets up their own admin-portal MFA (rule 11).
    console = steps.watch(await browser.new_page())
    await sign_in(console, f"{gateway}/admin", admin_email)
    # Every admin uses MFA, so the enrollment period given above buys no session without it.
    await expect(console.get_by_text("Every admin signs in to the admin console with multi-factor authentication."
                                     )).to_be_visible()
    await steps.shot(console, "admin-mfa-setup-required")
    admin_key = await set_up_mfa(console, clock, steps, "admin")
    await expect(console.get_by_role("heading", name="Users")).to_be_visible()

    # Search, select both users and require MFA from "more actions"; the period is checked before sending.
    await console.get_by_label("Search name or email").fill(tag)
    await console.get_by_role("button", name="Apply filters").click()
    await expect(console.locator("tbody tr")).to_have_count(2)
    await expect(row(console, alice).locator(".status-badge")).to_have_attribute("data-status", "none")
    bulk_requests: list[str] = []
    console.on("request", lambda r: r.url.endswith("/v1/users/mfa/bulk") and bulk_requests.append(r.method))
    await console.get_by_label(f"Select Alice {tag}").check()
    await console.get_by_label(f"Select Bob {tag}").check()
    await expect(console.get_by_text("2 users selected")).to_be_visible()
    await console.get_by_role("button", name="More actions").click()
    await console.get_by_role("menuitem", name="Require MFA on User Portal").click()
    days = console.get_by_label("Enrollment period (days)")
    await expect(days).to_have_value("7")
    await days.fill("400")
    await console.get_by_role("button", name="Require", exact=True).click()
    await expect(console.get_by_text("whole number of days from 1 to 365")).to_be_visible()
    await steps.shot(console, "admin-bulk-period-refused")
    assert bulk_requests == [], "an invalid period must not be sent"
    await days.fill("7")
    await console.get_by_role("button", name="Require", exact=True).click()
    await expect(console.get_by_text("Completed: 2 of 2 changed, 0 failed.")).to_be_visible()
    assert bulk_requests == ["POST"]
    for user in (alice, bob):
        await expect(row(console, user).locator(".status-badge")).to_have_attribute("data-status", "enrolling")
    await row(console, alice).locator(".status-badge").hover()
    tooltip = row(console, alice).get_by_role("tooltip")
    await expect(tooltip).to_contain_text("Deadline:")
    await expect(tooltip).to_contain_text(re.compile(r"Time remaining: (7 days|6 days 23 hours)"))
    await expect(console.locator("button.count[data-status=enrolling] .count-number")).to_have_text("2")
    await steps.shot(console, "admin-bulk-required-enrolling")

    # Systems: MFA enabled in bulk, this time with the keyboard only.
    await console.get_by_role("link", name="Systems and applications").click()
    await console.get_by_label("Search by name").fill(f"build-{tag}")  # the list is paged: other tests' systems
    await console.get_by_role("button", name="Search", exact=True).click()
    await console.get_by_label(f"Select build-{tag}").check()
    await console.get_by_role("button", name="More actions").focus()
    await console.keyboard.press("ArrowDown")
    await expect(console.get_by_role("menuitem", name="Enable MFA")).to_be_focused()
    await console.keyboard.press("Enter")
    await expect(console.get_by_role("button", name="Enable MFA", exact=True)).to_be_focused()
    await console.keyboard.press("Enter")
    await expect(console.get_by_text("MFA enabled on 1 of 1.")).to_be_visible()
    await expect(console.locator(f"tr[data-system-id='{system}']")).to_contain_text("Enabled")
    await steps.shot(console, "admin-systems-mfa-enabled")

    # Alice dismisses the setup prompt (rule 7) ...
    portal = steps.watch(await browser.new_page())
    await sign_in(portal, f"{gateway}/portal", alice_email)
    await expect(portal.get_by_role("heading", name="Set up multi-factor authentication")).to_be_visible()
    await expect(portal.get_by_text("7 days left")).to_be_visible()
    await steps.shot(portal, "alice-setup-prompt")
    await portal.get_by_role("button", name="Not now").click()
    await expect(portal.get_by_role("heading", name="You are signed in")).to_be_visible()
    await expect(portal.get_by_text("7 days remain")).to_be_visible()
    await steps.shot(portal, "alice-dismissed")
    await portal.get_by_role("button", name="Sign out").click()

    # ... two days later sets up with the key from the page, and signs in with a code.
    clock.advance(timedelta(days=2))
    await sign_in(portal, f"{gateway}/portal", alice_email)
    await expect(portal.get_by_text("5 days left")).to_be_visible()
    alice_key = await set_up_mfa(portal, clock, steps, "alice")
    await expect(portal.get_by_text("Your MFA is set up")).to_be_visible()
    await portal.get_by_role("button", name="Sign out").click()
    clock.advance(STEP)
    await sign_in(portal, f"{gateway}/portal", alice_email)
    await expect(portal.locator(".code-timer")).to_be_visible()
    await steps.shot(portal, "alice-code-prompt")
    await enter_code(portal, alice_key, clock)
    await expect(portal.get_by_role("heading", name="You are signed in")).to_be_visible()
    await steps.shot(portal, "alice-signed-in-with-code")
    await portal.get_by_role("button", name="Sign out").click()

    # Bob's deadline passes: the portal locks him out, with the reason (rule 5).
    clock.advance(timedelta(days=6))
    await sign_in(portal, f"{gateway}/portal", bob_email)
    await expect(portal.get_by_role("heading", name="You are locked out")).to_be_visible()
    await expect(portal.get_by_role("alert")).to_contain_text("administrator")
    await steps.shot(portal, "bob-locked-out")

    # The admin's session ran out with the clock: they sign in again, now with their own code.
    await console.goto(f"{gateway}/admin/#/users")
    await expect(console.get_by_text("Your session has ended")).to_be_visible()
    await console.get_by_label("Email address").fill(admin_email)
    await console.get_by_label("Password").fill(PASSWORD)
    await console.get_by_role("button", name="Sign in").click()
    await enter_code(console, admin_key, clock)
    await console.get_by_label("Search name or email").fill(tag)
    await console.get_by_role("button", name="Apply filters").click()
    await expect(row(console, bob).locator(".status-badge")).to_have_attribute("data-status", "expired")
    await expect(row(console, alice).locator(".status-badge")).to_have_attribute("data-status", "active")
    await steps.shot(console, "admin-sees-expired-and-active")

    # Bob logs in over SSH to the build host as `bob<tag>`: not set up, so not asked (rule 10).
    named = ok(await admin.patch(f"/v1/users/{bob}", json={"login_name": f"bob{tag}"}))
    ok(await admin.get(f"/v1/users/{bob}", params={"consistent_with": named["consistency_token"]}))
    decided = await agent_of(system).post(f"/v1/systems/{system}/authorize",
                                          json={"login_name": f"bob{tag}", "source": "192.0.2.7"})
    assert ok(decided) == {"decision": "allow", "reason": "mfa_not_set_up"}

    # The admin resets Bob's MFA from his details (rule 6); the history shows it.
    await console.get_by_role("link", name=f"Bob {tag}").click()
    await expect(console.get_by_role("heading", name=f"Bob {tag}")).to_be_visible()
    await expect(console.locator("dl.details")).to_contain_text(f"bob{tag}")
    await console.get_by_role("button", name="MFA options").click()
    await console.get_by_role("menuitem", name="Reset MFA").click()
    await console.get_by_label("Enrollment period (days)").fill("3")
    await console.get_by_role("button", name="Reset", exact=True).click()
    await expect(console.get_by_text("MFA reset: 3-day enrollment period from now.")).to_be_visible()
    await expect(console.locator("dd .status-badge")).to_have_attribute("data-status", "enrolling")
    history = console.locator("table.history")
    await expect(history).to_contain_text("MFA reset: new 3-day enrollment period")
    await expect(history).to_contain_text("MFA required: 7-day enrollment period")
    await expect(history).to_contain_text(f"System login as bob{tag} to build-{tag} from 192.0.2.7: let in "
                                          "(MFA not set up)")
    await steps.shot(console, "admin-reset-bob")

    # Bob signs in again: the prompt is back, with the new period.
    await sign_in(portal, f"{gateway}/portal", bob_email)
    await expect(portal.get_by_text("3 days left")).to_be_visible()
    await portal.get_by_role("button", name="Not now").click()
    await expect(portal.get_by_role("heading", name="You are signed in")).to_be_visible()
    await steps.shot(portal, "bob-signed-in-again")

    assert steps.errors == [], steps.errors
