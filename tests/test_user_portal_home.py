"""The user portal's home page after sign-in, end to end in headless Chromium, at desktop width and at a
390 px phone width: the user's name and MFA status, the deadline with its time zone and a correct plural,
"set up now" during enrollment, with where to find an authenticator app in the App Store and Google Play; recovery
codes left and new ones made with a code from the app; the warning and next steps after a sign-in with a
recovery code; readable replay and throttle messages, the form held while throttled. Then the new API
(/v1/portal/account, /setup/challenge, /recovery-codes) attacked: no session, another kind of session,
wrong codes (counted), a replayed code, and no recovery code in an event or a log.
Screenshots are saved under test-artifacts/user-portal-home/<journey>-<device>/.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta

import httpx
import pyotp
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portal_flows import SHOWN_SECRETS, code_now, ok, problem, set_up
from portal_flows import sign_in as api_sign_in
from test_reference_portals import (
    ARTIFACTS,
    STEP,
    Steps,
    enter_code,
    new_user,
    set_up_mfa,
    sign_in,
)

pytestmark = pytest.mark.slow

HOME_ARTIFACTS = ARTIFACTS.parent / "user-portal-home"
DEVICES = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}
PAUSE = timedelta(minutes=15)  # the first pause after five wrong codes in a row
THROTTLED = re.compile(r"Too many wrong codes\. Try again at .*\d{1,2}:\d{2}\s?[AP]M UTC\.")


async def open_portal(browser: BrowserContext, steps: Steps, device: str) -> Page:
    page = steps.watch(await browser.new_page())
    await page.set_viewport_size(DEVICES[device])
    return page


async def fits_the_screen(page: Page) -> None:
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


def wrong_code(key: str, clock) -> str:
    """A well-formed code the app does not show now (another hour's)."""
    return pyotp.TOTP(key.replace(" ", "")).at(clock.now() + timedelta(hours=1))


async def set_up_user(admin: httpx.AsyncClient, portal: httpx.AsyncClient, clock, name: str) -> dict:
    """A user with MFA set up through the API: id, email, key, recovery codes and session."""
    user_id, email = await new_user(admin, uuid.uuid4().hex[:8], name)
    ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 7}))
    key, answer = await set_up(portal, (await api_sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)  # the setup's code is used up: the next sign-in needs the next one
    return {"id": user_id, "email": email, "key": key, "codes": answer["recovery_codes"], "session": answer["session"]}


def remember(codes: list[str]) -> list[str]:
    SHOWN_SECRETS.extend(codes + [c.replace("-", "") for c in codes])
    return codes


@pytest.mark.parametrize("device", DEVICES)
async def test_home_during_enrollment_shows_name_and_deadline_and_sets_up_from_there(
        stack, admin, clock, browser: BrowserContext, device: str) -> None:
    steps = Steps(HOME_ARTIFACTS / f"enrollment-{device}")
    tag = uuid.uuid4().hex[:8]
    user_id, email = await new_user(admin, tag, "Dana")
    ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 1}))
    page = await open_portal(browser, steps, device)

    # The setup page says where to get an app; Dana looks, and goes back.
    await sign_in(page, f"{stack.url('gateway')}/portal", email)
    await expect(page.get_by_text("1 day left")).to_be_visible()
    await page.get_by_role("button", name="Set up now").click()
    await expect(page.get_by_role("heading", name="Get an authenticator app")).to_be_visible()
    await expect(page.locator(".app-stores li")).to_have_text([
        "On an iPhone or iPad: open the App Store, search for Google Authenticator or Microsoft Authenticator and "
        "install it.",
        "On an Android phone: open Google Play, search for Google Authenticator or Microsoft Authenticator and "
        "install it."])
    await fits_the_screen(page)
    await steps.shot(page, "setup-with-app-store-links")
    await page.get_by_role("button", name="Cancel").click()

    # Signed in again, Dana dismisses the prompt: the home page names her, her status and deadline.
    await sign_in(page, f"{stack.url('gateway')}/portal", email)
    await page.get_by_role("button", name="Not now").click()
    await expect(page.get_by_role("heading", name="You are signed in")).to_be_visible()
    await expect(page.get_by_text(f"Signed in as Dana {tag}")).to_be_visible()
    await expect(page.locator(".status-text")).to_have_text("Required by your administrator: set it up before the "
                                                            "deadline")
    deadline = page.locator("dd", has_text="1 day remains")
    await expect(deadline).to_contain_text(re.compile(r"\d{4}, \d{1,2}:\d{2}\s?[AP]M UTC"))
    await expect(page.get_by_role("heading", name="Recovery codes")).to_have_count(0)
    await fits_the_screen(page)
    await steps.shot(page, "home-enrolling")

    # "Set up now" from the home page, to the end.
    await set_up_mfa(page, clock, steps, "dana")
    await expect(page.get_by_text("Your MFA is set up")).to_be_visible()
    await expect(page.locator(".status-text")).to_contain_text("On: you type a code")
    await expect(page.locator(".codes-left")).to_have_text("10 recovery codes left.")
    await expect(page.get_by_text("1 day remains")).to_have_count(0)
    await fits_the_screen(page)
    await steps.shot(page, "home-set-up")
    assert steps.errors == [], steps.errors


@pytest.mark.parametrize("device", DEVICES)
async def test_after_a_recovery_code_sign_in_the_home_warns_and_new_codes_replace_the_old(
        stack, admin, portal, clock, browser: BrowserContext, device: str) -> None:
    steps = Steps(HOME_ARTIFACTS / f"recovery-{device}")
    user = await set_up_user(admin, portal, clock, "Erin")
    page = await open_portal(browser, steps, device)

    await sign_in(page, f"{stack.url('gateway')}/portal", user["email"])
    await page.get_by_label("Verification code").fill(user["codes"][0])
    await page.get_by_role("button", name="Verify").click()
    warning = page.get_by_role("alert").filter(has_text="You signed in with a recovery code")
    await expect(warning).to_contain_text("9 recovery codes left")
    await expect(warning.get_by_role("heading", name="Next steps")).to_be_visible()
    await expect(warning).to_contain_text("Lost your phone or the app? Ask your administrator to reset your MFA")
    await expect(page.locator(".codes-left")).to_have_text("9 recovery codes left.")
    await fits_the_screen(page)
    await steps.shot(page, "home-after-recovery-code")
    await page.reload()  # the warning stays until something is done about it
    await expect(warning).to_be_visible()

    # New codes, for a code from the app: a wrong one first.
    await page.get_by_role("button", name="Make new recovery codes").click()
    await expect(page.get_by_text("Your current recovery codes stop working")).to_be_visible()
    await page.get_by_label("Code from your authenticator app").fill(wrong_code(user["key"], clock))
    await page.get_by_role("button", name="Make new codes").click()
    await expect(page.get_by_text("That code is not correct or has expired.")).to_be_visible()
    await steps.shot(page, "new-codes-wrong-code")
    await page.get_by_label("Code from your authenticator app").fill(code_now(user["key"], clock))
    await page.get_by_role("button", name="Make new codes").click()
    await expect(page.get_by_role("heading", name="Your new recovery codes")).to_be_visible()
    await expect(page.get_by_text("Your earlier recovery codes no longer work.")).to_be_visible()
    new_codes = remember(await page.locator("#recovery-codes code").all_inner_texts())
    assert len(new_codes) == 10 and not set(new_codes) & set(user["codes"])
    await fits_the_screen(page)
    await steps.shot(page, "new-codes-shown-once")
    await page.get_by_role("button", name="I have stored my new recovery codes: continue").click()
    await expect(page.locator(".codes-left")).to_have_text("10 recovery codes left.")
    await expect(page.get_by_text("You signed in with a recovery code")).to_have_count(0)
    await steps.shot(page, "home-with-new-codes")

    # An old code, never used, no longer signs in; a new one does.
    old = await portal.post("/v1/portal/verify", json={
        "challenge": (await api_sign_in(portal, user["email"]))["challenge"], "code": user["codes"][1]})
    problem(old, 401, "invalid_code")
    new = ok(await portal.post("/v1/portal/verify", json={
        "challenge": (await api_sign_in(portal, user["email"]))["challenge"], "code": new_codes[0]}))
    assert (new["method"], new["recovery_codes_left"]) == ("recovery_code", 9)
    assert steps.errors == [], steps.errors


@pytest.mark.parametrize("device", DEVICES)
async def test_replay_and_throttle_messages_say_what_to_do_and_the_form_waits(
        stack, admin, portal, clock, browser: BrowserContext, device: str) -> None:
    steps = Steps(HOME_ARTIFACTS / f"messages-{device}")
    user = await set_up_user(admin, portal, clock, "Finn")
    ok(await portal.post("/v1/portal/verify", json={
        "challenge": (await api_sign_in(portal, user["email"]))["challenge"], "code": user["codes"][0]}))
    page = await open_portal(browser, steps, device)
    portal_url = f"{stack.url('gateway')}/portal"

    await sign_in(page, portal_url, user["email"])
    await enter_code(page, user["key"], clock)
    await expect(page.get_by_role("heading", name="You are signed in")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()

    # The same code again, within its step: a replay, told apart from a wrong code.
    await sign_in(page, portal_url, user["email"])
    await enter_code(page, user["key"], clock)
    await expect(page.get_by_role("alert")).to_have_text("This code was just used: wait for the next one in your "
                                                         "app, then type it.")
    await steps.shot(page, "code-just-used")

    # A recovery code already used: told as a recovery code.
    code_field = page.get_by_label("Verification code")
    await code_field.fill(user["codes"][0])
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("alert")).to_contain_text("That recovery code is not correct or was already used: "
                                                            "each recovery code works only once.")
    await steps.shot(page, "recovery-code-used")

    # Four wrong codes more make five in a row; the next try is refused until a time the page names.
    for _ in range(4):
        await code_field.fill(wrong_code(user["key"], clock))
        await page.get_by_role("button", name="Verify").click()
        await expect(page.get_by_role("alert")).to_have_text("That code is not correct or has expired. Type the code "
                                                             "your app shows now.")
        await expect(code_field).to_have_value("")
    clock.advance(STEP)
    await enter_code(page, user["key"], clock)
    await expect(page.get_by_role("alert")).to_have_text(THROTTLED)
    await expect(page.get_by_role("alert")).not_to_contain_text("seconds")
    await expect(code_field).to_be_disabled()
    await expect(page.get_by_role("button", name="Verify")).to_be_disabled()
    await expect(page.get_by_role("button", name="Cancel")).to_be_enabled()
    await fits_the_screen(page)
    await steps.shot(page, "throttled-form-held")
    assert steps.errors == [], steps.errors


async def test_the_portal_account_api_needs_a_users_session(stack, admin, portal, gateway_as, root_admin,
                                                           clock) -> None:
    user = await set_up_user(admin, portal, clock, "Gail")
    code = code_now(user["key"], clock)
    admin_session = await root_admin.session(portal, clock)
    no_key = gateway_as(None)
    for path, extra in (("/v1/portal/account", {}), ("/v1/portal/setup/challenge", {}),
                        ("/v1/portal/recovery-codes", {"code": code})):
        problem(await no_key.post(path, json={"session": user["session"], **extra}), 401, "unauthenticated")
        assert (await portal.post(path, json=extra)).status_code == 422, path
        for session in ("not-a-session", admin_session):
            problem(await portal.post(path, json={"session": session, **extra}), 401, "invalid_session")

    account = ok(await portal.post("/v1/portal/account", json={"session": user["session"]}))
    assert account["name"].startswith("Gail ") and account["email"] == user["email"]
    assert account["mfa"] == {"status": "active", "deadline": None, "days_remaining": None, "recovery_codes_left": 10,
                              "throttled_until": None, "locked": False}
    problem(await portal.post("/v1/portal/setup/challenge", json={"session": user["session"]}), 409, "already_set_up")
    # The refusals above spent no code: it still buys new recovery codes.
    new_codes = remember(ok(await portal.post("/v1/portal/recovery-codes",
                                              json={"session": user["session"], "code": code}))["recovery_codes"])
    assert len(new_codes) == 10


async def test_new_recovery_codes_count_wrong_codes_refuse_replays_and_leave_no_secret(
        stack, admin, portal, gateway_as, clock) -> None:
    user = await set_up_user(admin, portal, clock, "Hal")
    session = {"session": user["session"]}

    # A recovery code is no proof of the app; a wrong code is refused and counted as at sign-in.

    async def new_codes_for(code: str) -> httpx.Response:
        return await portal.post("/v1/portal/recovery-codes", json={"session": user["session"], "code": code})

    assert (await new_codes_for(user["codes"][0])).status_code == 422
    for _ in range(5):
        problem(await new_codes_for(wrong_code(user["key"], clock)), 401, "invalid_code")
    right = code_now(user["key"], clock)
    paused = problem(await new_codes_for(right), 429, "throttled")
    assert paused["retry_after"] > 0
    sign_in_code = await portal.post("/v1/portal/verify", json={
        "challenge": (await api_sign_in(portal, user["email"]))["challenge"], "code": right})
    problem(sign_in_code, 429, "throttled")  # the pause holds for sign-in too: one count
    account = ok(await portal.post("/v1/portal/account", json=session))
    assert account["mfa"]["throttled_until"] is not None

    # After the pause: new codes, once per code; the old codes stop working.
    clock.advance(PAUSE + STEP)
    right = code_now(user["key"], clock)
    new_codes = remember(ok(await new_codes_for(right))["recovery_codes"])
    assert len(set(new_codes)) == 10 and not set(new_codes) & set(user["codes"])
    problem(await new_codes_for(right), 401, "code_already_used")
    for old in user["codes"][:2]:
        problem(await portal.post("/v1/portal/verify", json={
            "challenge": (await api_sign_in(portal, user["email"]))["challenge"], "code": old}), 401, "invalid_code")
    assert ok(await portal.post("/v1/portal/account", json=session))["mfa"]["recovery_codes_left"] == 10

    # The event names the user as the actor and carries no code; no log has one either.
    record = await regenerated_record(gateway_as("auditor"), user["id"])
    assert record["envelope"]["actor"] == f"user:{user['id']}"
    assert set(record["envelope"]["payload"]) == {"principal_id", "scope", "secret_id", "time_step",
                                                  "recovery_codes_issued"}
    logs = b"".join(path.read_bytes() for path in stack.supervisor.log_dir.glob("*.log"))
    text = json.dumps(record)
    for secret in [*new_codes, *(c.replace("-", "") for c in new_codes)]:
        assert secret not in text and secret.encode() not in logs


async def regenerated_record(auditor: httpx.AsyncClient, user_id: str) -> dict:
    """The user's RecoveryCodesRegenerated in the audit log, once the gateway has stored it."""
    async with asyncio.timeout(30):
        while True:
            answer = await auditor.get("/v1/audit/events", params={"principal_id": user_id,
                                                                  "type": "RecoveryCodesRegenerated"})
            assert answer.status_code == 200, answer.text
            lines = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
            if lines:
                return lines[0]
            await asyncio.sleep(0.2)
