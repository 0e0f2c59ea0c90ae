"""Every email of an enrollment's timeline arrives on time and exactly once (rules 2, 4, 5, 6, 8)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from fault_tools import MailWatch
from portal_flows import new_user, ok, set_up, sign_in

REQUIRED = "Action needed: set up multi-factor authentication"
REMINDER = "Reminder: your MFA enrollment period ends soon"
EXPIRED = "Your MFA enrollment period has expired"
CHANGED = "Your MFA enrollment period has changed"
RESET = "Your MFA has been reset"
COMPLETE = "MFA setup complete"
SETTLE_SECONDS = 3  # after the last expected mail, time for a duplicate to show up if there were one


def subjects(mail: MailWatch, email: str) -> Counter:
    return mail.subjects([email])[email]


async def test_a_users_whole_timeline(stack, admin, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin, enrollment_days=3)
    await mail.arrived(email, REQUIRED)

    clock.advance(timedelta(days=2, minutes=1))  # 24 hours before the deadline
    (reminder,) = await mail.arrived(email, REMINDER)
    assert "in less than 24 hours" in reminder.get_body(("plain",)).get_content()

    clock.advance(timedelta(days=1))  # past the deadline
    await mail.arrived(email, EXPIRED)
    assert (await sign_in(portal, email))["outcome"] == "locked_out"

    ok(await admin.post(f"/v1/users/{user_id}/mfa/reset", json={"enrollment_days": 5}))
    await mail.arrived(email, RESET)
    prompt = await sign_in(portal, email)
    await set_up(portal, prompt["challenge"], clock)
    await mail.arrived(email, COMPLETE)

    await asyncio.sleep(SETTLE_SECONDS)
    assert subjects(mail, email) == Counter([REQUIRED, REMINDER, EXPIRED, RESET, COMPLETE])


async def test_an_extension_before_the_reminder_moves_it(stack, admin, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin, enrollment_days=3)
    clock.advance(timedelta(days=1))
    ok(await admin.post(f"/v1/users/{user_id}/mfa/extend", json={"enrollment_days": 5}))
    await mail.arrived(email, CHANGED)
    clock.advance(timedelta(days=1, hours=1))  # when the old reminder was due
    await asyncio.sleep(SETTLE_SECONDS)
    assert REMINDER not in subjects(mail, email)
    clock.advance(timedelta(days=3))  # 24 hours before the new deadline
    await mail.arrived(email, REMINDER)
    await asyncio.sleep(SETTLE_SECONDS)
    assert subjects(mail, email) == Counter([REQUIRED, CHANGED, REMINDER])


async def test_no_reminder_after_setup(stack, admin, portal, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    _, email = await new_user(admin, enrollment_days=2)
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    await mail.arrived(email, COMPLETE)
    clock.advance(timedelta(days=3))
    await asyncio.sleep(SETTLE_SECONDS)
    assert subjects(mail, email) == Counter([REQUIRED, COMPLETE])
