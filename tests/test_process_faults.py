"""Scheduler and gateway processes crashing, restarting and running as replicas, on real servers.

The fake clock is shared by every process; expectations are relative to what the services
stored (deadlines, timers), never to the wall clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta

import httpx
import pytest

from fault_tools import (
    EXPIRED,
    REMINDER,
    REQUIRED,
    MailWatch,
    enrollment,
    eventually,
    new_users,
    scheduler_events,
    timers,
)
from invariants import check_and_record, mark
from portal_flows import new_user, ok
from trust_tools import SignedAs, direct

pytestmark = pytest.mark.slow
DAY = timedelta(days=1)
REMINDER_TIMER = "reminder:86400"
SETTLE_SECONDS = 2  # ten firing ticks of every scheduler process: time for a second firing, if there were one


async def test_two_scheduler_replicas_fire_each_timer_once(stack, admin, clock) -> None:
    since = await mark(stack)
    stack.start_replica("scheduler", "scheduler-2")
    try:
        stack.wait_for_group("scheduler", members=2)
        mail = MailWatch(stack.infra.maildir)
        # A one-day period: the 24-hour reminder is due at once, so both replicas race for it as soon
        # as its timer is written, and for every expiry together when the clock passes the deadlines.
        users = await new_users(admin, 20, enrollment_days=1)
        emails = [e for _, e in users]
        enrollments = [enrollment(u) for u, _ in users]

        async def expiry_timers():
            pending = await timers(stack, enrollments)
            return all("expiry" in pending[e] for e in enrollments) and pending

        deadlines = {e: t["expiry"] for e, t in (await eventually(expiry_timers, 60, "every expiry timer")).items()}

        async def fired(kind: str):
            events = await scheduler_events(stack, enrollments)
            return all(any(t == kind for t, _, _ in events[e]) for e in enrollments)

        await eventually(lambda: fired("EnrollmentExpiring"), 60, "every reminder fired")
        # mailed before the deadline passes (a reminder whose deadline has passed is not sent)
        await eventually(lambda: mail.each_got(emails, REMINDER), 60, "every reminder mail")
        clock.advance(DAY + timedelta(minutes=1))
        await eventually(lambda: fired("EnrollmentExpired"), 60, "every expiry fired")
        # (a required mail may come late: queued before the notifier knew the user, it is retried)
        await eventually(lambda: mail.each_got(emails, REQUIRED, EXPIRED), 60, "every required and expiry mail")
        await asyncio.sleep(SETTLE_SECONDS)
        assert stack.supervisor.is_running("scheduler") and stack.supervisor.is_running("scheduler-2")
    finally:
        stack.take_down("scheduler-2")
        stack.wait_for_group("scheduler", members=1)

    events = await scheduler_events(stack, enrollments)
    for e in enrollments:
        assert len(events[e]) == 2, events[e]
        (expiring, deadline, reminder_due), expired = events[e]
        assert expiring == "EnrollmentExpiring" and deadline == deadlines[e], events[e]
        assert deadlines[e] - DAY <= reminder_due < deadlines[e], events[e]
        assert expired == ("EnrollmentExpired", deadlines[e], deadlines[e]), events[e]
    assert await timers(stack, enrollments) == {}
    assert mail.subjects(emails) == {e: Counter({REQUIRED: 1, REMINDER: 1, EXPIRED: 1}) for e in emails}
    await check_and_record(stack, "two scheduler replicas racing for every timer",
                           "20 users required with a one-day period, the clock moved past their deadlines", since)


async def test_a_deadline_passed_while_the_scheduler_is_down_fires_once_on_start(stack, admin, clock) -> None:
    since = await mark(stack)
    mail = MailWatch(stack.infra.maildir)
    user_id, email = await new_user(admin, enrollment_days=2)
    key = enrollment(user_id)

    async def both_timers():
        pending = (await timers(stack, [key]))[key]
        return len(pending) == 2 and pending

    pending = await eventually(both_timers, 60, "the reminder and expiry timers")
    deadline = pending["expiry"]
    assert pending[REMINDER_TIMER] == deadline - DAY
    await eventually(lambda: mail.each_got([email], REQUIRED), 60, "the required mail")

    stack.take_down("scheduler")
    try:
        clock.advance(2 * DAY + timedelta(minutes=1))  # past the reminder and the deadline
        await asyncio.sleep(SETTLE_SECONDS)
        assert await scheduler_events(stack, [key]) == {}
        assert mail.subjects([email]) == {email: Counter({REQUIRED: 1})}
    finally:
        stack.restart("scheduler")
        stack.wait_for_group("scheduler", members=1)

    await eventually(lambda: mail.each_got([email], EXPIRED), 60, "the expired mail")
    await asyncio.sleep(SETTLE_SECONDS)
    assert await scheduler_events(stack, [key]) == {key: [
        ("EnrollmentExpiring", deadline, deadline - DAY),  # missed timers fire oldest first, each with its due time
        ("EnrollmentExpired", deadline, deadline),
    ]}
    assert await timers(stack, [key]) == {}
    # A reminder whose deadline has passed says nothing true any more: only the expiry is mailed.
    assert mail.subjects([email]) == {email: Counter({REQUIRED: 1, EXPIRED: 1})}
    assert ok(await admin.get(f"/v1/users/{user_id}"))["status"] == "expired"
    await check_and_record(stack, "scheduler down while a reminder and a deadline passed",
                           "1 user required with a two-day period, the clock moved past its deadline", since)


# Per user, commands sent straight to the mfa service (what the gateway forwards), and what they imply:
# (status, required, enrollment_days).
SCRIPTS = [
    ([("require", 7), ("extend", 10), ("extend", 12), ("reset", 9)], ("enrolling", True, 9)),
    ([("require", 5), ("remove-requirement", None), ("require", 4), ("remove-requirement", None)],
     ("none", False, None)),
    ([("require", None), ("remove-requirement", None), ("require", 6), ("extend", 8)], ("enrolling", True, 8)),
    ([("require", 3), ("reset", 6), ("remove-requirement", None), ("require", None)],
     ("required_no_period", True, None)),
]


async def test_projector_and_scheduler_killed_mid_stream_catch_up_without_loss(stack, admin) -> None:
    since = await mark(stack)
    users = [u for u, _ in await new_users(admin, 16)]
    plan = {user_id: SCRIPTS[i % len(SCRIPTS)] for i, user_id in enumerate(users)}
    total = sum(len(steps) for steps, _ in plan.values())
    sent = 0
    receipts = []

    async with direct(stack, "mfa",
                      auth=SignedAs(stack, "mfa", actor=f"admin:{uuid.uuid4()}")) as mfa:
        async def run(user_id: str, steps) -> None:
            nonlocal sent
            for action, days in steps:
                body = {} if action == "remove-requirement" else {"enrollment_days": days}
                receipts.append(ok(await mfa.post(f"/enrollments/user_portal/{user_id}/{action}", json=body)))
                sent += 1
                await asyncio.sleep(0.05)

        commands = asyncio.gather(*(run(u, steps) for u, (steps, _) in plan.items()))
        await eventually(lambda: sent >= total // 4, 30, "a quarter of the commands", 0.01)
        stack.kill("gateway")
        stack.kill("scheduler")
        sent_at_kill = sent
        print(f"\nkilled the gateway and the scheduler after {sent}/{total} commands")
        await commands  # the rest while both are down
        await asyncio.to_thread(stack.restart, "gateway")
        await asyncio.to_thread(stack.restart, "scheduler")
        for service in ("gateway", "scheduler"):  # a killed member stays in its group until its session times out
            await asyncio.to_thread(stack.wait_for_group, service, 1)
        truth = {u: ok(await mfa.get(f"/enrollments/user_portal/{u}")) for u in users}

    for user_id, (_, (status, required, _)) in plan.items():  # the mfa service did what the commands say
        assert (truth[user_id]["status"], truth[user_id]["required"]) == (status, required)

    def expected(user_id: str) -> tuple:
        status, required, days = plan[user_id][1]
        deadline = truth[user_id]["deadline"]
        return status, required, False, deadline and datetime.fromisoformat(deadline), days

    async def read_model_differences() -> dict:
        seen = {}
        for user_id in users:
            try:
                user = ok(await admin.get(f"/v1/users/{user_id}"))
            except httpx.TransportError as error:
                return {"gateway": repr(error)}
            seen[user_id] = (user["status"], user["required"], user["set_up"],
                             user["deadline"] and datetime.fromisoformat(user["deadline"]), user["enrollment_days"])
        return {u: {"read model": seen[u], "commands": expected(u)} for u in users if seen[u] != expected(u)}

    await eventually(read_model_differences, 60, "the read model equal to what the commands imply", 0.5,
                     done=lambda differences: differences == {})

    expected_timers = {
        enrollment(u): {"expiry": d, REMINDER_TIMER: d - DAY}
        for u in users if (d := expected(u)[3]) is not None
    }
    await eventually(lambda: timers(stack, [enrollment(u) for u in users]), 60,
                     "the scheduler's timers equal to the current deadlines", 0.5,
                     done=lambda pending: pending == expected_timers)

    # No event lost, none applied twice: every event handled by every consumer, projected once.
    await check_and_record(stack, "gateway (projector) and scheduler SIGKILLed mid-stream, restarted",
                           f"{total} mfa commands for 16 users, {total - sent_at_kill} of them while both were down",
                           since, accepted=receipts)
