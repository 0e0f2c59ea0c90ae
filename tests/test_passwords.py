"""Passwords (NIST SP 800-63B), against the running stack.

A principal changes their own password in the user portal or the admin console with their session, their
current password and, when they have MFA set up, a code; every other session of theirs ends, the one that
made the change stays. An admin has a reset link mailed; it works once, before it expires, while no newer
one was sent, on its own portal; using it ends every session, and the next sign-in still asks for the code.
Each attack is refused with nothing changed: no event, the old password still signs in.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pyotp
import pytest
from playwright.async_api import BrowserContext, expect

from fault_tools import MailWatch, eventually, schema
from mfaplane_identity.settings import IdentitySettings
from portal_flows import (
    ADMIN_PORTAL,
    PASSWORD,
    SHOWN_SECRETS,
    code_now,
    console_session,
    new_admin,
    new_user,
    ok,
    problem,
    set_up,
    sign_in,
)

NEW_PASSWORD = "a new and longer passphrase"
SHOWN_SECRETS.append(NEW_PASSWORD)
PORTAL = "/v1/portal"
STEP = timedelta(seconds=30)
RESET_SUBJECT = "Reset your password"
LINK = re.compile(r"(\S+)#reset=([0-9a-f]{32}\.[A-Za-z0-9_-]{43})")
SETTLE_SECONDS = 3  # after the expected mail, time for a duplicate to show up if there were one


async def change(portal: httpx.AsyncClient, session: str, current: str = PASSWORD, new: str = NEW_PASSWORD,
                 code: str | None = None, prefix: str = PORTAL) -> httpx.Response:
    body = {"session": session, "current_password": current, "new_password": new}
    return await portal.post(f"{prefix}/password", json=body | ({"code": code} if code else {}))


async def redeem(portal: httpx.AsyncClient, token: str, prefix: str = PORTAL,
                 new: str = NEW_PASSWORD) -> httpx.Response:
    return await portal.post(f"{prefix}/password-reset", json={"token": token, "new_password": new})


async def live(portal: httpx.AsyncClient, session: str, prefix: str = PORTAL) -> bool:
    answer = await portal.post(f"{prefix}/session", json={"session": session})
    if answer.status_code == 200:
        return True
    problem(answer, 401, "invalid_session")
    return False


async def password_changes(stack, principal_id: str) -> int:
    async with schema(stack, "identity") as db:
        return await db.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1 AND type LIKE '%PasswordChanged'",
                                 principal_id)


async def signs_in_with(portal: httpx.AsyncClient, email: str, password: str, prefix: str = PORTAL) -> str:
    """The outcome of a sign-in with `password`, or the refusal's code."""
    answer = await portal.post(f"{prefix}/sign-in", json={"email": email, "password": password})
    return answer.json()["outcome"] if answer.status_code == 200 else answer.json()["code"]


async def reset_links(mail: MailWatch, email: str, count: int = 1) -> list[tuple[str, str]]:
    """(page, token) of the reset links mailed to `email`, once `count` have come; then checks no more come."""
    def mailed() -> list:
        return [m for m in mail.received(email) if RESET_SUBJECT in m["Subject"]]

    await eventually(mailed, 60, f"{count} reset links to {email}", done=lambda links: len(links) >= count)
    await asyncio.sleep(SETTLE_SECONDS)
    assert len(mailed()) == count, [m["Subject"] for m in mailed()]
    links = [LINK.search(m.get_body(("plain",)).get_content()).groups() for m in mailed()]
    SHOWN_SECRETS.extend(token for _, token in links)
    return links


def wrong_code(key: str, clock) -> str:
    """A code the key gives for no step around now."""
    valid = {pyotp.TOTP(key.replace(" ", "")).at(clock.now(), counter_offset=offset) for offset in (-1, 0, 1)}
    return next(code for code in (f"{n:06d}" for n in range(4)) if code not in valid)


async def second_console_session(portal: httpx.AsyncClient, email: str, key: str, clock) -> str:
    """Another admin-console session (another device) of an admin with MFA set up, a step later."""
    challenge = (await sign_in(portal, email, prefix=ADMIN_PORTAL))["challenge"]
    answer = ok(await portal.post(f"{ADMIN_PORTAL}/verify", json={"challenge": challenge,
                                                                   "code": code_now(key, clock)}))
    clock.advance(STEP)
    return answer["session"]


async def mfa_user(admin: httpx.AsyncClient, portal: httpx.AsyncClient, clock) -> tuple[str, str, str, str]:
    """A user with MFA set up and signed in, a step later: id, email, key and session."""
    user_id, email = await new_user(admin, enrollment_days=7)
    key, answer = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)
    return user_id, email, key, answer["session"]


# --- self-service change ---------------------------------------------------------------------------


async def test_a_user_changes_their_password_and_only_the_session_that_did_it_stays(admin, portal) -> None:
    user_id, email = await new_user(admin)
    this, other = (await sign_in(portal, email))["session"], (await sign_in(portal, email))["session"]

    changed = ok(await change(portal, this))
    assert await live(portal, this) and not await live(portal, other)
    ok(await admin.get(f"/v1/users/{user_id}", params={"consistent_with": changed["consistency_token"]}))
    assert await live(portal, this), "the projector's cutoff for the change ends the sessions before it only"
    assert await signs_in_with(portal, email, PASSWORD) == "invalid_credentials"
    assert await signs_in_with(portal, email, NEW_PASSWORD) == "signed_in"


async def test_a_wrong_current_password_changes_nothing_and_counts_toward_the_lockout(stack, admin, portal) -> None:
    user_id, email = await new_user(admin)
    session = (await sign_in(portal, email))["session"]
    allowed = IdentitySettings.model_fields["password_max_failures"].default

    for attempt in range(allowed):
        problem(await change(portal, session, current=f"guess number {attempt}"), 401, "invalid_credentials")
    problem(await change(portal, session), 429, "too_many_attempts")
    assert await signs_in_with(portal, email, PASSWORD) == "too_many_attempts"
    assert await password_changes(stack, user_id) == 0 and await live(portal, session)


async def test_with_mfa_set_up_a_change_needs_a_right_code_and_a_wrong_password_spends_none(stack, admin, portal,
                                                                                             clock) -> None:
    user_id, email, key, session = await mfa_user(admin, portal, clock)
    problem(await change(portal, session), 401, "code_required")
    problem(await change(portal, session, code=wrong_code(key, clock)), 401, "invalid_code")
    code = code_now(key, clock)
    problem(await change(portal, session, current="not the password", code=code), 401, "invalid_credentials")
    assert await password_changes(stack, user_id) == 0

    ok(await change(portal, session, code=code))
    assert await signs_in_with(portal, email, NEW_PASSWORD) == "mfa_required"


async def test_the_new_password_must_follow_the_rules_and_differ_from_the_current(stack, admin, portal) -> None:
    user_id, email = await new_user(admin)
    session = (await sign_in(portal, email))["session"]
    problem(await change(portal, session, new="short"), 422, "validation_error")
    problem(await change(portal, session, new="x" * 257), 422, "validation_error")
    problem(await change(portal, session, new=PASSWORD), 400, "password_unchanged")
    for guessable in ("Password123!", "qwertyuiop", f"{email}1"):  # common, a keyboard walk, the user's own email
        problem(await change(portal, session, new=guessable), 400, "password_too_guessable")
    assert await password_changes(stack, user_id) == 0
    assert await signs_in_with(portal, email, PASSWORD) == "signed_in"


async def test_no_change_without_a_session_of_that_portal_or_the_portal_key(stack, admin, portal, gateway_as) -> None:
    user_id, email = await new_user(admin)
    session = (await sign_in(portal, email))["session"]
    problem(await change(portal, session, prefix=ADMIN_PORTAL), 401, "invalid_session")
    problem(await change(portal, session[:-2] + "xx"), 401, "invalid_session")
    ok(await portal.post(f"{PORTAL}/sign-out", json={"session": session}))
    problem(await change(portal, session), 401, "invalid_session")
    live_session = (await sign_in(portal, email))["session"]
    problem(await change(gateway_as(None), live_session), 401, "unauthenticated")
    problem(await change(admin, live_session), 403, "forbidden")
    assert await password_changes(stack, user_id) == 0
    assert await signs_in_with(portal, email, PASSWORD) == "signed_in"


async def test_an_admin_changes_their_own_password_in_the_console_with_a_code(admin, console, portal, clock) -> None:
    admin_id, email, _ = await new_admin(console)
    key, this = await console_session(portal, email, clock)
    clock.advance(STEP)
    other = await second_console_session(portal, email, key, clock)

    problem(await change(portal, this, prefix=ADMIN_PORTAL), 401, "code_required")
    changed = ok(await change(portal, this, code=code_now(key, clock), prefix=ADMIN_PORTAL))
    assert await live(portal, this, ADMIN_PORTAL) and not await live(portal, other, ADMIN_PORTAL)
    ok(await admin.get(f"/v1/admins/{admin_id}", params={"consistent_with": changed["consistency_token"]}))
    assert await live(portal, this, ADMIN_PORTAL)
    assert await signs_in_with(portal, email, NEW_PASSWORD, ADMIN_PORTAL) == "mfa_required"


# --- reset links -----------------------------------------------------------------------------------


async def test_a_mailed_reset_link_works_once_ends_every_session_and_keeps_mfa(stack, admin, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email, _, session = await mfa_user(admin, portal, clock)
    requested = ok(await admin.post(f"/v1/users/{user_id}/password-reset"))
    assert requested["expires_at"]
    [(page, token)] = await reset_links(mail, email)
    assert page == stack.url("gateway") + "/portal/"
    assert await signs_in_with(portal, email, PASSWORD) == "mfa_required", "the password works until the link is used"

    problem(await redeem(portal, token, new="Password123!"), 400, "password_too_guessable")
    assert await password_changes(stack, user_id) == 0 and await live(portal, session)
    ok(await redeem(portal, token))  # the refusal did not use the link up
    assert not await live(portal, session)
    problem(await redeem(portal, token), 400, "invalid_reset_token")
    assert await password_changes(stack, user_id) == 1
    assert await signs_in_with(portal, email, PASSWORD) == "invalid_credentials"
    assert await signs_in_with(portal, email, NEW_PASSWORD) == "mfa_required"


async def test_a_superseded_forged_misplaced_or_expired_link_is_refused(stack, admin, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin)
    ok(await admin.post(f"/v1/users/{user_id}/password-reset"))
    [(_, first)] = await reset_links(mail, email)
    ok(await admin.post(f"/v1/users/{user_id}/password-reset"))
    second = (await reset_links(mail, email, count=2))[1][1]
    session = (await sign_in(portal, email))["session"]

    forged_mac = second[:-1] + ("A" if second[-1] != "A" else "B")
    for token, prefix in [(first, PORTAL), (forged_mac, PORTAL), (first[:33] + second[33:], PORTAL),
                          (second, ADMIN_PORTAL)]:
        problem(await redeem(portal, token, prefix), 400, "invalid_reset_token")
    assert await live(portal, session)
    clock.advance(timedelta(seconds=IdentitySettings.model_fields["password_reset_ttl_seconds"].default + 1))
    problem(await redeem(portal, second), 400, "invalid_reset_token")

    assert await password_changes(stack, user_id) == 0
    assert await signs_in_with(portal, email, PASSWORD) == "signed_in"


async def test_an_admins_reset_link_goes_to_the_admin_console_only(stack, admin, console, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    admin_id, email, _ = await new_admin(console)
    _, session = await console_session(portal, email, clock)
    clock.advance(STEP)
    problem(await admin.post(f"/v1/users/{admin_id}/password-reset"), 404, "user_not_found")
    problem(await portal.post(f"/v1/admins/{admin_id}/password-reset"), 403, "forbidden")
    ok(await admin.post(f"/v1/admins/{admin_id}/password-reset"))
    [(page, token)] = await reset_links(mail, email)
    assert page == stack.url("gateway") + "/admin/"

    problem(await redeem(portal, token), 400, "invalid_reset_token")
    assert await password_changes(stack, admin_id) == 0
    ok(await redeem(portal, token, ADMIN_PORTAL))
    assert not await live(portal, session, ADMIN_PORTAL)
    assert await signs_in_with(portal, email, NEW_PASSWORD, ADMIN_PORTAL) == "mfa_required"


@pytest.mark.slow
async def test_the_reference_user_portal_takes_a_reset_link_to_a_page_that_sets_the_password(
        stack, admin, portal, browser: BrowserContext) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin)
    ok(await admin.post(f"/v1/users/{user_id}/password-reset"))
    [(page_url, token)] = await reset_links(mail, email)
    page = await browser.new_page()
    await page.goto(f"{page_url}#reset={token}")
    await expect(page.get_by_role("heading", name="Choose a new password for the user portal")).to_be_visible()
    assert "reset" not in page.url, "the token leaves the address bar"

    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.get_by_text("Your password is changed")).to_be_visible()
    await expect(page.get_by_role("heading", name="Sign in to the user portal")).to_be_visible()
    assert await signs_in_with(portal, email, NEW_PASSWORD) == "signed_in"
