"""Fair throttling of codes (rule 9), attacked through the portal routes of the running stack.

The policy (services/mfa throttle.py): every 5th wrong code in a run pauses code entry, 15 minutes
at first; a wrong code confirming setup counts like one at sign-in; the code just accepted, sent
again, is refused as `code_already_used` and is no wrong code; a run is forgotten after a quiet
day; the principal is emailed when code entry is paused or locked and when a recovery code is used.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pyotp
import pytest

from fault_tools import MailWatch, checked_failures
from portal_flows import PASSWORD, begin_setup, code_now, confirm_setup, new_user, ok, problem, set_up, sign_in

STEP = timedelta(seconds=30)
FAILURES_PER_PAUSE = 5
FIRST_PAUSE = timedelta(minutes=15)
LOCK_AFTER = 3  # the strict mfa process's THROTTLE_LOCK_AFTER_FAILURES
PAUSED = "Wrong MFA codes: code entry is paused"
LOCKED = "Wrong MFA codes: your MFA is locked"
RECOVERY_CODE_USED = "A recovery code was used to sign in"
SETTLE_SECONDS = 3  # after the last expected mail, time for a duplicate to show up if there were one


def wrong_codes(key: str, clock, count: int) -> list[str]:
    """`count` codes that the key gives for no step around now."""
    totp = pyotp.TOTP(key.replace(" ", ""))
    valid = {totp.at(clock.now(), counter_offset=offset) for offset in (-1, 0, 1)}
    return [code for code in (f"{n:06d}" for n in range(count + 3)) if code not in valid][:count]


async def verify(portal: httpx.AsyncClient, challenge: str, code: str, prefix: str = "/v1/portal") -> httpx.Response:
    return await portal.post(f"{prefix}/verify", json={"challenge": challenge, "code": code})


async def mails(mail: MailWatch, email: str, subject: str, count: int = 1) -> list:
    """The mails of `subject` to `email`, once `count` have arrived; then checks no more come."""
    await mail.arrived(email, subject, count)
    await asyncio.sleep(SETTLE_SECONDS)
    caught = mail.received(email, subject)
    assert len(caught) == count, [m["Subject"] for m in caught]
    return caught


def text(message) -> str:
    return message.get_body(("plain",)).get_content()


async def active_user(admin, portal, clock) -> tuple[str, str, str]:
    """A user with MFA set up, a step after setup: id, email and key."""
    user_id, email = await new_user(admin, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)
    return user_id, email, key


async def test_thirty_wrong_setup_codes_then_the_right_one_hand_out_no_recovery_codes(stack, admin, portal,
                                                                                     clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin, enrollment_days=7)
    challenge = (await sign_in(portal, email))["challenge"]
    key = await begin_setup(portal, challenge)

    answers = await asyncio.gather(*(confirm_setup(portal, challenge, code)
                                     for code in wrong_codes(key, clock, 30)))
    assert Counter(a.status_code for a in answers) == {401: FAILURES_PER_PAUSE, 429: 30 - FAILURES_PER_PAUSE}
    for answer in answers:
        problem(answer, answer.status_code, "invalid_code" if answer.status_code == 401 else "throttled")
    refused = problem(await confirm_setup(portal, challenge, code_now(key, clock)), 429, "throttled")
    assert "recovery_codes" not in refused and 0 < refused["retry_after"] <= FIRST_PAUSE.total_seconds()

    assert await checked_failures(stack, user_id) == FAILURES_PER_PAUSE
    assert (await sign_in(portal, email))["outcome"] == "enrollment_prompt", "setup was not completed"
    (paused,) = await mails(mail, email, PAUSED)
    assert "no code is accepted until" in text(paused)

    clock.advance(FIRST_PAUSE)  # the pause is over: the user finishes setup
    challenge = (await sign_in(portal, email))["challenge"]
    completed = ok(await confirm_setup(portal, challenge, code_now(key, clock)))
    assert completed["outcome"] == "signed_in" and len(completed["recovery_codes"]) == 10


async def test_the_code_just_accepted_sent_again_is_a_replay_and_never_throttles_the_user(stack, admin, portal,
                                                                                          clock) -> None:
    user_id, email, key = await active_user(admin, portal, clock)
    replays = 2 * FAILURES_PER_PAUSE
    challenges = [(await sign_in(portal, email))["challenge"] for _ in range(replays + 1)]
    code = code_now(key, clock)
    assert ok(await verify(portal, challenges[0], code))["outcome"] == "signed_in"

    # Someone who saw the code (and knows the password) sends it again, from many sign-ins at once.
    answers = await asyncio.gather(*(verify(portal, challenge, code) for challenge in challenges[1:]))
    for answer in answers:
        problem(answer, 401, "code_already_used")
    assert await checked_failures(stack, user_id) == 0

    clock.advance(STEP)  # the user's next code signs in: nothing was paused
    challenge = (await sign_in(portal, email))["challenge"]
    assert ok(await verify(portal, challenge, code_now(key, clock)))["outcome"] == "signed_in"


async def test_a_run_of_wrong_codes_is_forgotten_after_a_quiet_day(stack, admin, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email, key = await active_user(admin, portal, clock)
    short_of_a_pause = FAILURES_PER_PAUSE - 1
    for _ in range(2):  # without decay the fifth of these eight would pause code entry
        challenge = (await sign_in(portal, email))["challenge"]
        for code in wrong_codes(key, clock, short_of_a_pause):
            problem(await verify(portal, challenge, code), 401, "invalid_code")
        clock.advance(timedelta(days=1))

    challenge = (await sign_in(portal, email))["challenge"]
    assert ok(await verify(portal, challenge, code_now(key, clock)))["outcome"] == "signed_in"
    assert await checked_failures(stack, user_id) == 2 * short_of_a_pause
    await asyncio.sleep(SETTLE_SECONDS)
    assert mail.received(email, PAUSED) == []


@pytest.fixture
def strict_portal(stack, api_keys) -> Iterator[httpx.AsyncClient]:
    """A portal client of a gateway whose mfa process locks a factor after LOCK_AFTER wrong codes."""
    stack.start_replica("mfa", "mfa-strict", {"THROTTLE_LOCK_AFTER_FAILURES": str(LOCK_AFTER)})
    url = stack.start_replica("gateway", "gateway-strict", {"MFA_URL": stack.url("mfa-strict")})
    for service in ("mfa", "gateway"):
        stack.wait_for_group(service, members=2)
    try:
        yield httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {api_keys['portal']}"})
    finally:
        for service in ("gateway", "mfa"):
            stack.take_down(f"{service}-strict")
            stack.wait_for_group(service, members=1)


async def test_a_locked_factor_refuses_the_right_code_and_the_user_is_emailed(stack, admin, portal, clock,
                                                                             strict_portal) -> None:
    mail = MailWatch(stack.infra.maildir)
    _, email, key = await active_user(admin, portal, clock)
    async with strict_portal:
        challenge = (await sign_in(strict_portal, email))["challenge"]
        for code in wrong_codes(key, clock, LOCK_AFTER):
            problem(await verify(strict_portal, challenge, code), 401, "invalid_code")
        problem(await verify(strict_portal, challenge, code_now(key, clock)), 423, "factor_locked")
    (locked,) = await mails(mail, email, LOCKED)
    assert "until an administrator resets your MFA" in text(locked)


@pytest.mark.parametrize("kind", ["user", "admin"])
async def test_each_recovery_code_used_is_emailed_with_how_many_are_left(stack, admin, console, portal, clock,
                                                                         kind) -> None:
    mail = MailWatch(stack.infra.maildir)
    if kind == "user":
        _, email = await new_user(admin, enrollment_days=7)
        prefix, subject = "/v1/portal", RECOVERY_CODE_USED
    else:
        email = f"admin-{pyotp.random_base32()[:8].lower()}@example.com"
        admin_id = ok(await console.post("/v1/admins", json={"email": email, "name": "Root",
                                                           "password": PASSWORD}))["aggregate_id"]
        ok(await admin.post(f"/v1/admins/{admin_id}/mfa/require", json={"enrollment_days": 7}))
        prefix, subject = "/v1/admin-portal", f"{RECOVERY_CODE_USED} (admin portal)"
    _, answer = await set_up(portal, (await sign_in(portal, email, prefix=prefix))["challenge"], clock, prefix)

    for recovery_code in answer["recovery_codes"][:2]:
        challenge = (await sign_in(portal, email, prefix=prefix))["challenge"]
        assert ok(await verify(portal, challenge, recovery_code, prefix))["outcome"] == "signed_in"

    told = sorted(text(message) for message in await mails(mail, email, subject, count=2))
    assert "You have 8 recovery codes left." in told[0] and "You have 9 recovery codes left." in told[1]
