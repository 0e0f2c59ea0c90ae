"""The admin console's admins, in headless Chromium.

An admin finds themselves in the list of admins, adds another (the console asks for a fresh code first,
and the new admin is mailed a link to set their password), requires MFA for them, resets it once they
have set it up (a fresh code again), removes them, and, left the last admin, is refused removing
themselves. Each menu offers only what fits the admin's state. Each step's screenshot is saved under
test-artifacts/console-admins/.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from fault_tools import MailWatch, eventually
from portal_flows import ADMIN_PORTAL, PASSWORD, bearer, code_now, console_session, live_admins, ok
from test_passwords import redeem, reset_links
from test_reference_portals import Steps, set_up_mfa, sign_in

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console-admins"
PAST_STEP_UP = timedelta(minutes=6)  # the session's code is then older than STEP_UP_SECONDS (300)


def admin_row(page: Page, admin_id: str):
    return page.locator(f"tr[data-admin-id='{admin_id}']")


async def mfa_options(page: Page) -> list[str]:
    """Opens the MFA options menu and reads what it offers."""
    await page.get_by_role("button", name="MFA options").click()
    return await page.get_by_role("menuitem").all_inner_texts()


async def settled(admin, admin_id: str, status: str) -> None:
    """Waits until the admins list shows a change made outside the page (a sign-in's MFA setup)."""
    await eventually(lambda: admin.get(f"/v1/admins/{admin_id}"), 15, f"admin {admin_id} {status}",
                     done=lambda answer: answer.json()["status"] == status)


async def step_up(page: Page, key: str, clock, purpose: str) -> None:
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    await expect(dialog).to_contain_text(f"To {purpose}, enter the code")
    await dialog.get_by_label("Verification code").fill(code_now(key, clock))
    await dialog.get_by_role("button", name="Verify and continue").click()


async def test_admin_lists_adds_requires_resets_and_removes_admins_but_not_the_last(
        stack, admin, console, portal, gateway_as, clock, browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    mail = MailWatch(stack.infra.maildir)
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    lead_email, grace_email = f"lead-{tag}@example.com", f"grace-{tag}@example.com"
    lead = ok(await console.post("/v1/admins", json={"email": lead_email, "name": f"Lead {tag}",
                                                     "password": PASSWORD}))["id"]

    page = steps.watch(await browser.new_page())
    await sign_in(page, f"{gateway}/admin", lead_email)
    lead_key = await set_up_mfa(page, clock, steps, "admin")
    await settled(admin, lead, "configured_not_required")
    await page.get_by_role("link", name="Admins").click()
    await expect(page.get_by_role("heading", name="Admins", exact=True)).to_be_focused()
    await expect(page.get_by_role("link", name="Admins")).to_have_attribute("aria-current", "page")
    await page.get_by_label("Search name or email").fill(tag)
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(admin_row(page, lead)).to_contain_text(f"Lead {tag} (you)")
    await expect(admin_row(page, lead).locator(".status-badge")).to_have_attribute("data-status",
                                                                                  "configured_not_required")
    await steps.shot(page, "admins-listed")

    # Add an admin: the form is checked before anything is sent; the session's code is too old, so the
    # console asks for a fresh one, then adds the admin and mails them a link to set their password.
    clock.advance(PAST_STEP_UP)
    await page.get_by_role("button", name="Add admin").click()
    adding = page.get_by_role("dialog", name="Add an admin")
    await expect(adding.get_by_label("Name")).to_be_focused()
    await adding.get_by_label("Name").fill(f"Grace {tag}")
    await adding.get_by_label("Email address").fill("grace")
    await adding.get_by_role("button", name="Add admin").click()
    await expect(adding.get_by_role("alert")).to_have_text("Enter an email address such as ada@example.com.")
    await expect(adding.get_by_label("Email address")).to_be_focused()
    await adding.get_by_label("Email address").fill(grace_email)
    await expect(adding.get_by_label("Email them a link to set it (recommended)")).to_be_checked()
    await expect(adding.get_by_label("Password", exact=True)).to_be_hidden()
    await steps.shot(page, "add-admin-form")
    await adding.get_by_role("button", name="Add admin").click()
    await steps.shot(page, "add-admin-step-up")
    await step_up(page, lead_key, clock, f"add {grace_email} as an admin")
    await expect(page.get_by_role("status").filter(has_text="Added")).to_contain_text(
        f"Added Grace {tag} ({grace_email}) as an admin. A link to set a password is on its way to {grace_email}; "
        "it works once, until")
    await expect(adding).to_have_count(0)
    await expect(page.locator("tbody tr")).to_have_count(2)
    grace_row = page.locator("tbody tr", has_text=f"Grace {tag}")
    await expect(grace_row.locator(".status-badge")).to_have_attribute("data-status", "none")
    await steps.shot(page, "admin-added")
    grace = await grace_row.get_attribute("data-admin-id")

    # Only requiring fits an admin without MFA; then an enrollment period runs.
    await grace_row.get_by_role("link", name=f"Grace {tag}").click()
    await expect(page.get_by_role("heading", name=f"Grace {tag}")).to_be_focused()
    assert await mfa_options(page) == ["Require MFA"]
    await page.get_by_role("menuitem", name="Require MFA").click()
    await page.get_by_role("button", name="Require", exact=True).click()
    await expect(page.get_by_role("status").filter(has_text="MFA required")).to_contain_text(
        "MFA required: 7-day enrollment period, until")
    await expect(page.locator(".status-badge")).to_have_attribute("data-status", "enrolling")
    await expect(page.locator("table.history")).to_contain_text("Admin console: MFA required: 7-day enrollment period")
    assert await mfa_options(page) == ["Extend enrollment period", "Remove MFA requirement"]
    await page.keyboard.press("Escape")
    await steps.shot(page, "mfa-required")

    # Grace sets her password with the mailed link and sets up MFA at her first sign-in.
    [(_, token)] = await reset_links(mail, grace_email)
    ok(await redeem(portal, token, prefix=ADMIN_PORTAL, new=PASSWORD))
    _, grace_session = await console_session(portal, grace_email, clock)
    await settled(admin, grace, "active")
    await page.reload()
    await expect(page.locator(".status-badge")).to_have_attribute("data-status", "active")
    assert await mfa_options(page) == ["Reset MFA", "Remove MFA requirement"]

    # Resetting an admin's MFA asks for a fresh code too; her sessions end and a new period starts.
    clock.advance(PAST_STEP_UP)
    await page.get_by_role("menuitem", name="Reset MFA").click()
    resetting = page.get_by_role("dialog", name=f"Reset MFA for Grace {tag}")
    await expect(resetting).to_contain_text("Their console sessions end")
    await resetting.get_by_role("button", name="Reset", exact=True).click()
    await step_up(page, lead_key, clock, f"reset the MFA of Grace {tag}")
    await expect(page.get_by_role("status").filter(has_text="MFA reset")).to_contain_text(
        "MFA reset: 7-day enrollment period, until")
    await expect(page.locator(".status-badge")).to_have_attribute("data-status", "enrolling")
    await expect(page.locator("table.history")).to_contain_text("Admin console: MFA reset: new 7-day enrollment period")
    assert (await bearer(gateway_as, grace_session).get(f"/v1/admins/{grace}")).status_code == 401
    await steps.shot(page, "mfa-reset")

    # Remove her: the confirmation names her; the list no longer has her.
    await page.get_by_role("button", name="Remove admin").click()
    removing = page.get_by_role("dialog", name=f"Remove Grace {tag}?")
    await expect(removing).to_contain_text("This cannot be undone.")
    await steps.shot(page, "remove-confirmation")
    await removing.get_by_role("button", name="Remove admin").click()
    await expect(page.get_by_role("heading", name="Admins", exact=True)).to_be_focused()
    await expect(page.get_by_role("status").filter(has_text="Removed")).to_have_text(
        f"Removed Grace {tag} ({grace_email}).")
    await page.get_by_label("Search name or email").fill(tag)  # the page's reload forgot the search
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(admin_row(page, lead)).to_be_visible()
    assert (await admin.get(f"/v1/admins/{grace}")).status_code == 404

    # Left the last admin, removing oneself is confirmed as such, then refused with the reason.
    for other in set(await live_admins(admin)) - {lead}:
        ok(await admin.delete(f"/v1/admins/{other}"))
    await admin_row(page, lead).get_by_role("link", name=f"Lead {tag}").click()
    await expect(page.get_by_role("heading", name=f"Lead {tag} (you)")).to_be_focused()
    await page.get_by_role("button", name="Remove my admin account").click()
    myself = page.get_by_role("dialog", name="Remove your own admin account?")
    await expect(myself).to_contain_text("You are about to remove yourself: you are signed out at once")
    await myself.get_by_role("button", name="Remove my admin account").click()
    await expect(myself.get_by_role("alert")).to_have_text(
        "There must always be an admin, and you are the last one: add another admin before removing yourself.")
    await steps.shot(page, "last-admin-refused")
    await myself.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("button", name="Remove my admin account")).to_be_focused()
    await expect(page.get_by_text(re.compile(f"Signed in as {lead_email}"))).to_be_visible()
    ok(await admin.get(f"/v1/admins/{lead}"))

    assert steps.errors == [], steps.errors
