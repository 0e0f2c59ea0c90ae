"""The admin console's systems and applications, and what the SSH agent needs, in headless Chromium.

An admin registers a Linux system from the form, switches MFA on in its row, renames it, finds it by
name, mints an agent key for it (the console asks for a fresh code first), sets a user's login name on
systems, and deletes another system. The key shown once works for its own system only. Each step's
screenshot is saved under test-artifacts/console-systems/.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portal_flows import PASSWORD, SHOWN_SECRETS, code_now, ok
from test_reference_portals import Steps, new_user, set_up_mfa, sign_in

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console-systems"
PAST_STEP_UP = timedelta(minutes=6)  # the session's code is then older than STEP_UP_SECONDS (300)


def system_row(page: Page, name: str):
    return page.locator("tbody tr", has_text=name)


async def search_systems(page: Page, text: str) -> None:
    await page.get_by_label("Search by name").fill(text)
    await page.get_by_role("button", name="Search", exact=True).click()


async def row_action(page: Page, system: str, action: str) -> None:
    await page.get_by_role("button", name=f"Actions for {system}").click()
    await page.get_by_role("menuitem", name=action).click()


async def test_admin_registers_switches_renames_finds_keys_and_deletes_systems_and_names_a_login(
        stack, admin, console, agent_of, clock, browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    admin_email = f"systems-{tag}@example.com"
    ok(await console.post("/v1/admins", json={"email": admin_email, "name": "Systems admin", "password": PASSWORD}))
    alice, _ = await new_user(admin, tag, "Alice")
    bob, _ = await new_user(admin, tag, "Bob")
    ok(await admin.patch(f"/v1/users/{bob}", json={"login_name": f"bob{tag}"}))
    old = ok(await admin.post("/v1/systems", json={"name": f"old-{tag}", "kind": "linux"}))
    ok(await admin.get("/v1/systems", params={"consistent_with": old["consistency_token"]}))
    await browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway)

    page = steps.watch(await browser.new_page())
    await sign_in(page, f"{gateway}/admin", admin_email)
    admin_key = await set_up_mfa(page, clock, steps, "admin")
    await page.get_by_role("link", name="Systems and applications").click()
    await expect(page.get_by_role("heading", name="Systems and applications", exact=True)).to_be_focused()

    # Register: a name is checked before anything is sent; then the new Linux system is listed, MFA off.
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_text("Enter a name.")).to_be_visible()
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await page.get_by_label("Name", exact=True).fill(f"web-{tag}")
    await page.get_by_label("Kind").select_option(label="Linux (SSH login)")
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("status").filter(has_text="Registered")).to_have_text(
        f"Registered web-{tag} (Linux (SSH login)). MFA is off on it until you switch it on.")
    await search_systems(page, tag)
    await expect(page.locator("tbody tr")).to_have_count(2)
    switch = page.get_by_role("switch", name=f"MFA on web-{tag}")
    await expect(switch).to_have_attribute("aria-checked", "false")
    await expect(system_row(page, f"web-{tag}")).to_contain_text("Linux (SSH login)")
    await steps.shot(page, "registered")

    # The row's switch turns MFA on, and the message names the system.
    await switch.click()
    await expect(page.get_by_text(f"MFA enabled on web-{tag}: users who have set up MFA are asked for a code")
                 ).to_be_visible()
    await expect(switch).to_have_attribute("aria-checked", "true")
    await expect(switch).to_be_focused()
    await expect(system_row(page, f"web-{tag}")).to_contain_text("Enabled")
    await expect(system_row(page, f"old-{tag}")).to_contain_text("Disabled")
    await steps.shot(page, "mfa-switched-on")

    # Rename, then find it under its new name only.
    await row_action(page, f"web-{tag}", "Rename")
    await expect(page.get_by_role("dialog", name=f"Rename web-{tag}")).to_be_visible()
    await page.get_by_label("New name").fill(f"gate-{tag}")
    await page.get_by_role("button", name="Rename", exact=True).click()
    await expect(page.get_by_text(f"Renamed web-{tag} to gate-{tag}.")).to_be_visible()
    await expect(page.get_by_role("button", name=f"Actions for gate-{tag}")).to_be_focused()
    await search_systems(page, f"gate-{tag}")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(system_row(page, f"gate-{tag}")).to_contain_text("Enabled")
    system = await system_row(page, f"gate-{tag}").get_attribute("data-system-id")
    await steps.shot(page, "renamed-and-found")

    # An agent key, after the session's code is too old: the console asks for a fresh one, refuses a wrong one.
    clock.advance(PAST_STEP_UP)
    await row_action(page, f"gate-{tag}", "Add agent key")
    step_up = page.get_by_role("dialog", name="Confirm it is you")
    await expect(step_up).to_contain_text(f"To mint an agent key for gate-{tag}")
    await expect(step_up.get_by_label("Verification code")).to_be_focused()
    wrong = "000000" if code_now(admin_key, clock) != "000000" else "111111"
    await step_up.get_by_label("Verification code").fill(wrong)
    await step_up.get_by_role("button", name="Verify and continue").click()
    await expect(step_up.get_by_role("alert")).to_have_text("The code is wrong, expired or already used.")
    await steps.shot(page, "step-up-wrong-code")
    await step_up.get_by_label("Verification code").fill(code_now(admin_key, clock))
    await step_up.get_by_role("button", name="Verify and continue").click()
    shown = page.get_by_role("dialog", name=f"Agent key for gate-{tag}")
    await expect(shown).to_contain_text("This is the only time the key is shown")
    key = await shown.locator("#agent-key").inner_text()
    SHOWN_SECRETS.append(key)
    assert key.startswith("mfp_")
    command = await shown.locator("#install-command").inner_text()
    assert command.splitlines() == [
        "python3 -m mfaplane_agent install \\", f"  --gateway-url {gateway} \\", f"  --system-id {system} \\",
        "  --api-key-file /root/agent-key", "rm /root/agent-key", "systemctl reload ssh"]
    await expect(shown.locator("#install-key-file")).to_have_text("install -m 600 /dev/null /root/agent-key")
    await expect(shown.get_by_role("button", name="Copy key")).to_be_focused()
    await shown.get_by_role("button", name="Copy key").click()
    await expect(shown.get_by_text("Copied.")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == key
    await steps.shot(page, "agent-key-shown-once")
    await shown.get_by_role("button", name="Done").click()
    await expect(page.get_by_text(f"Agent key \u201cgate-{tag} agent\u201d minted for gate-{tag}.")).to_be_visible()
    await expect(page.locator("#agent-key")).to_have_count(0)
    await expect(page.get_by_role("button", name=f"Actions for gate-{tag}")).to_be_focused()

    # The key decides for its own system, and for no other.
    async with httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {key}",
                                                            "API-Version": "2026-12-07"}) as agent:
        decided = await agent.post(f"/v1/systems/{system}/authorize", json={"login_name": f"bob{tag}"})
        assert ok(decided) == {"decision": "allow", "reason": "mfa_not_set_up"}
        elsewhere = await agent.post(f"/v1/systems/{old['id']}/authorize", json={"login_name": f"bob{tag}"})
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "agent_key_of_another_system")

    # A user's login name on systems: a taken one and a malformed one are refused with the reason.
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Search name or email").fill(f"alice-{tag}")
    await page.get_by_role("button", name="Apply filters").click()
    await page.get_by_role("link", name=f"Alice {tag}").click()
    await page.get_by_role("button", name="Change the login name on systems").click()
    login_name = page.get_by_label("Login name on systems")
    await expect(login_name).to_be_focused()
    await login_name.fill(f"bob{tag}")
    await page.get_by_role("button", name="Save login name").click()
    await expect(page.get_by_role("alert")).to_have_text(f"\u201cbob{tag}\u201d is already another user's login name: "
                                                         "choose another.")
    await expect(login_name).to_have_attribute("aria-invalid", "true")
    await steps.shot(page, "login-name-taken")
    await login_name.fill("Alice Smith")
    await page.get_by_role("button", name="Save login name").click()
    await expect(page.get_by_role("alert")).to_contain_text("\u201cAlice Smith\u201d cannot be a login name. Lowercase")
    await login_name.fill(f"alice{tag}")
    await page.get_by_role("button", name="Save login name").click()
    await expect(page.get_by_text(f"Login name on systems set to alice{tag}.")).to_be_visible()
    await expect(page.locator("#login-name")).to_have_text(f"alice{tag}")
    await expect(page.locator("table.history")).to_contain_text(f"Login name on systems set to alice{tag}")
    assert ok(await admin.get(f"/v1/users/{alice}"))["login_name"] == f"alice{tag}"
    await steps.shot(page, "login-name-set")

    # Delete the other system: the confirmation names it; afterwards it is gone from the list.
    await page.get_by_role("link", name="Systems and applications").click()
    await search_systems(page, f"old-{tag}")
    await row_action(page, f"old-{tag}", "Delete")
    confirm = page.get_by_role("dialog", name=f"Delete old-{tag}?")
    await expect(confirm).to_contain_text("this cannot be undone")
    await expect(confirm).to_contain_text("Its agent keys decide nothing any more")
    await steps.shot(page, "delete-confirmation")
    await confirm.get_by_role("button", name="Delete", exact=True).click()
    await expect(page.get_by_role("status").filter(has_text="Deleted")).to_have_text(f"Deleted old-{tag}.")
    await expect(page.locator("tbody")).to_have_text(
        f"No systems or applications have \u201cold-{tag}\u201d in their name.")
    await expect(page.get_by_role("heading", name="Systems and applications", exact=True)).to_be_focused()
    assert ok(await admin.get("/v1/systems", params={"q": f"old-{tag}"}))["items"] == []
    await search_systems(page, tag)
    await expect(page.locator("tbody tr")).to_have_count(1)
    await steps.shot(page, "deleted")

    # Paging: 26 systems matching a search fill a page of 25 and one more; a selection spans the pages.
    async def registered(name: str) -> None:
        made = ok(await admin.post("/v1/systems", json={"name": name, "kind": "linux"}))
        ok(await admin.get("/v1/systems", params={"consistent_with": made["consistency_token"], "limit": 1}))

    await asyncio.gather(*(registered(f"fleet-{tag}-{n:02d}") for n in range(26)))
    await search_systems(page, f"fleet-{tag}")
    await expect(page.locator("tbody tr")).to_have_count(25)
    await expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    await page.get_by_label(f"Select fleet-{tag}-00").check()
    await page.get_by_role("button", name="Next page").click()
    await expect(page.get_by_text("Page 2")).to_be_visible()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    await page.get_by_label(f"Select fleet-{tag}-25").check()
    await expect(page.get_by_text("2 selected")).to_be_visible()
    await page.get_by_role("button", name="More actions").click()
    await page.get_by_role("menuitem", name="Enable MFA").click()
    await page.get_by_role("button", name="Enable MFA", exact=True).click()
    await expect(page.get_by_text("MFA enabled on 2 of 2.")).to_be_visible()
    await expect(page.get_by_role("switch", name=f"MFA on fleet-{tag}-25")).to_have_attribute("aria-checked", "true")
    await page.get_by_role("button", name="Previous page").click()
    await expect(page.get_by_role("switch", name=f"MFA on fleet-{tag}-00")).to_have_attribute("aria-checked", "true")
    await expect(page.get_by_role("switch", name=f"MFA on fleet-{tag}-01")).to_have_attribute("aria-checked", "false")
    await steps.shot(page, "paged-bulk-enabled")

    assert steps.errors == [], steps.errors
