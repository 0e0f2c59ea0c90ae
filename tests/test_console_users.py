"""The admin console's users pages, in headless Chromium: adding, editing, deleting and exporting users; a
10,000-row CSV import previewed before anything is written; an action applied to every user matching a
filter after a dry-run summary; the padlock's MFA menu offering only what fits the status; code throttling
with its end time; a history naming the admin and the system. Screenshots go to
test-artifacts/console-users/.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from fault_tools import eventually
from portal_flows import PASSWORD, code_now, new_user, ok, set_up
from portal_flows import sign_in as portal_sign_in
from test_reference_portals import Steps, row, set_up_mfa, sign_in

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console-users"
PREVIEW_ROWS = 10_000
IMPORT_ROWS = 1_200  # more than one batch of 1,000


async def signed_in_console(console, browser: BrowserContext, gateway: str, clock, steps: Steps, tag: str) -> Page:
    """A new admin, signed in to the console with MFA set up, on the users list filtered by `tag`."""
    email = f"users-{tag}@example.com"
    ok(await console.post("/v1/admins", json={"email": email, "name": f"Ursula {tag}", "password": PASSWORD}))
    page = steps.watch(await browser.new_page())
    await sign_in(page, f"{gateway}/admin", email)
    await set_up_mfa(page, clock, steps, "admin")
    await filter_by(page, tag)
    return page


async def filter_by(page: Page, text: str) -> None:
    await page.get_by_label("Search name or email").fill(text)
    await page.get_by_role("button", name="Apply filters").click()


async def padlock_offers(page: Page, name: str) -> list[str]:
    await page.get_by_role("button", name=f"MFA options for {name}").click()
    offered = await page.get_by_role("menuitem").all_inner_texts()
    await page.keyboard.press("Escape")
    return offered


async def test_admin_adds_edits_exports_and_deletes_users_and_sees_state_aware_mfa_options(
        stack, admin, console, portal, agent_of, clock, browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    system = ok(await admin.post("/v1/systems", json={"name": f"db-{tag}", "kind": "linux"}))["id"]
    ok(await admin.put(f"/v1/systems/{system}/mfa", json={"enabled": True}))
    page = await signed_in_console(console, browser, gateway, clock, steps, tag)

    # Add: a user without a password is mailed a link to set one.
    await page.get_by_role("button", name="Add user").click()
    await page.get_by_role("button", name="Add user").last.click()
    await expect(page.get_by_text("Enter the user's name.")).to_be_visible()
    await page.get_by_label("Name", exact=True).fill(f"Nora {tag}")
    await page.get_by_label("Email", exact=True).fill(f"nora-{tag}@example.com")
    await page.get_by_role("dialog").get_by_role("button", name="Add user").click()
    await expect(page.get_by_role("status").filter(has_text="Added")).to_have_text(
        f"Added Nora {tag} (nora-{tag}@example.com): a link to set a password is on its way to them.")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await steps.shot(page, "added")

    # The padlock of a user with no requirement offers only "Require".
    assert await padlock_offers(page, f"Nora {tag}") == ["Require MFA on User Portal"]

    # Edit the name from the details; delete asks, naming the user.
    await page.get_by_role("link", name=f"Nora {tag}").click()
    await page.get_by_role("button", name="Edit name or email").click()
    await page.get_by_label("Name", exact=True).fill(f"Nora Quinn {tag}")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name=f"Nora Quinn {tag}")).to_be_visible()
    await expect(page.get_by_text(f"Saved: name Nora Quinn {tag}.")).to_be_visible()
    await page.get_by_role("button", name="Delete user").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading")).to_have_text(f"Delete Nora Quinn {tag}?")
    await expect(dialog).to_contain_text(f"Nora Quinn {tag} (nora-{tag}@example.com) will be deleted")
    await steps.shot(page, "delete-confirmation")
    await dialog.get_by_role("button", name=f"Delete Nora Quinn {tag}").click()
    await expect(page.get_by_text(f"Deleted Nora Quinn {tag} (nora-{tag}@example.com).")).to_be_visible()
    await filter_by(page, tag)
    await expect(page.get_by_text("No users match these filters.")).to_be_visible()

    # An active user logs in to the system with a code, then codes are paused after five wrong ones: the
    # details show the end time; the padlock offers no "Require" and no "Extend" (rule 6).
    user_id, email = await new_user(admin, enrollment_days=7)
    renamed = ok(await admin.patch(f"/v1/users/{user_id}", json={"name": f"Omar {tag}", "login_name": f"omar{tag}"}))
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": renamed["consistency_token"]}))
    key, _ = await set_up(portal, (await portal_sign_in(portal, email))["challenge"], clock)
    clock.advance(timedelta(seconds=30))
    decided = await agent_of(system).post(f"/v1/systems/{system}/authorize",
                                          json={"login_name": f"omar{tag}", "code": code_now(key, clock)})
    assert ok(decided)["decision"] == "allow"
    challenge = (await portal_sign_in(portal, email))["challenge"]
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        await portal.post("/v1/portal/verify", json={"challenge": challenge, "code": guess})
    await eventually(lambda: admin.get(f"/v1/users/{user_id}"), 15, "the pause reaches the user list",
                     done=lambda answer: answer.json()["throttled_until"] is not None)
    await page.reload()
    await filter_by(page, tag)
    await expect(row(page, user_id).locator(".status-badge")).to_have_attribute("data-status", "active")
    assert await padlock_offers(page, f"Omar {tag}") == ["Reset MFA", "Remove MFA requirement"]
    await page.get_by_role("link", name=f"Omar {tag}").click()
    await expect(page.locator("#code-attempts")).to_contain_text("Paused after repeated wrong codes, until ")
    history = page.locator("table.history")
    await expect(history).to_contain_text("Code attempts paused until")
    await expect(history).to_contain_text(f"Code accepted on db-{tag}")
    await expect(history).to_contain_text(f"System login as omar{tag} to db-{tag}: let in (code accepted)")
    await steps.shot(page, "throttled-details")

    # The history names the admin who acted, not an id.
    await page.get_by_role("button", name="MFA options for").click()
    await page.get_by_role("menuitem", name="Reset MFA").click()
    await page.get_by_role("button", name="Reset", exact=True).click()
    await expect(page.get_by_text("MFA reset: 7-day enrollment period from now.")).to_be_visible()
    await expect(page.locator("#code-attempts")).to_have_text("Accepted (not paused)")
    await expect(page.locator("table.history tbody tr").first).to_contain_text(f"Ursula {tag} (admin)")
    await steps.shot(page, "reset-by-named-admin")

    # Export: the CSV has the users the filter shows.
    await page.get_by_role("link", name="Back to users").click()
    await filter_by(page, tag)
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export CSV").click()
    exported = Path(await (await download_info.value).path()).read_text()
    assert [r["id"] for r in csv.DictReader(io.StringIO(exported))] == [user_id]
    assert steps.errors == [], steps.errors


def users_csv(path: Path, tag: str, rows: int) -> Path:
    """`rows` rows: all but two new users, then a repeated email and a bad one."""
    lines = ["email,name,password,login_name"]
    lines += [f"imp{i}-{tag}@example.com,Imported {i} {tag},{PASSWORD}," for i in range(rows - 2)]
    lines += [f"imp1-{tag}@example.com,Twice {tag},{PASSWORD},", f"not-an-email,Bad {tag},{PASSWORD},"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_admin_previews_10000_users_from_csv_then_imports_a_file_after_its_preview(
        stack, console, clock, browser: BrowserContext, tmp_path: Path) -> None:
    """10,000 rows are read and checked in the browser with the page answering; a whole import is made with
    a smaller file (each row is a user created in identity: 10,000 take minutes on the test machine)."""
    gateway = stack.url("gateway")
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    page = await signed_in_console(console, browser, gateway, clock, steps, tag)

    await page.get_by_role("button", name="Import from CSV").click()
    await page.get_by_label("CSV file").set_input_files(users_csv(tmp_path / "big.csv", tag, PREVIEW_ROWS))
    await page.get_by_role("button", name="Preview").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("status")).to_have_text(
        "Preview: 10000 rows read. 9998 users would be created; 2 rows with problems would be skipped. "
        "Nothing has been written yet.", timeout=60_000)
    await expect(dialog).to_contain_text(f"Line 10000 (imp1-{tag}@example.com): This email is on line 3.")
    await expect(dialog).to_contain_text("Line 10001 (not-an-email): email:")
    await steps.shot(page, "import-preview")
    await dialog.get_by_role("button", name="Cancel").click()
    assert (await console.get("/v1/users/status-counts", params={"q": tag})).json()["none"] == 0

    await page.get_by_role("button", name="Import from CSV").click()
    await page.get_by_label("CSV file").set_input_files(users_csv(tmp_path / "small.csv", tag, IMPORT_ROWS))
    await page.get_by_role("button", name="Preview").click()
    await expect(dialog.get_by_role("status")).to_contain_text(f"{IMPORT_ROWS - 2} users would be created")
    await dialog.get_by_role("button", name=f"Import {IMPORT_ROWS - 2} users").click()
    await expect(dialog.get_by_role("status")).to_have_text(
        f"Import finished: {IMPORT_ROWS - 2} users created, 2 rows skipped.", timeout=120_000)
    await steps.shot(page, "import-done")
    await dialog.get_by_role("button", name="Close").click()
    await expect(page.get_by_role("status").filter(has_text="Import finished")).to_be_visible()
    await expect(page.locator("button.count[data-status=none] .count-number")).to_have_text(str(IMPORT_ROWS - 2))
    assert steps.errors == [], steps.errors


async def test_admin_applies_an_action_to_every_user_matching_a_filter_after_a_dry_run(
        stack, admin, console, clock, browser: BrowserContext) -> None:
    gateway = stack.url("gateway")
    steps = Steps(ARTIFACTS)
    tag = uuid.uuid4().hex[:8]
    ids = []
    for i in range(4):
        receipt = ok(await admin.post("/v1/users", json={"email": f"f{i}-{tag}@example.com", "name": f"F{i} {tag}",
                                                          "password": PASSWORD}))
        ids.append(receipt["aggregate_id"])
    required = ok(await admin.post(f"/v1/users/{ids[0]}/mfa/require", json={"enrollment_days": 3}))
    tokens = [required["consistency_token"], receipt["consistency_token"]]
    ok(await admin.get("/v1/users", params={"consistent_with": tokens}))
    page = await signed_in_console(console, browser, gateway, clock, steps, tag)
    await page.get_by_label("MFA set up").select_option(label="Not set up")  # none of the four has
    await filter_by(page, tag)
    await expect(page.locator("tbody tr")).to_have_count(4)

    # Extend over the filter: the three not required are refused, and the summary says why.
    await page.get_by_role("button", name="Apply to every matching user").click()
    await page.get_by_role("menuitem", name="Extend enrollment period").click()
    await expect(page.get_by_role("dialog")).to_contain_text("in name or email, MFA not set up.")
    await page.get_by_role("button", name="Preview").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading")).to_have_text("Extend the enrollment period: 1 user will change")
    await expect(dialog).to_contain_text("3 users refused")
    await expect(dialog).to_contain_text("3 users: MFA is not required for this user")
    await steps.shot(page, "extend-dry-run")
    await dialog.get_by_role("button", name="Cancel").click()

    # Require over the filter: three change, one already required is left unchanged, and counted so.
    await page.get_by_role("button", name="Apply to every matching user").click()
    await page.get_by_role("menuitem", name="Require MFA on User Portal").click()
    await page.get_by_role("button", name="Preview").click()
    await expect(dialog.get_by_role("heading")).to_have_text("Require MFA: 3 users will change")
    await expect(dialog).to_contain_text("1 user already in that state (left unchanged)")
    await expect(dialog).to_contain_text("0 users refused")
    await steps.shot(page, "require-dry-run")
    await dialog.get_by_role("button", name="Require 3 users").click()
    await expect(page.get_by_text("Completed: 3 of 4 changed, 1 unchanged (already so), 0 failed.")).to_be_visible()
    for user_id in ids:
        await expect(row(page, user_id).locator(".status-badge")).to_have_attribute("data-status", "enrolling")
    await steps.shot(page, "require-completed")
    assert steps.errors == [], steps.errors
