"""Mail delivery under faults, against the real notifier process, SMTP catcher and broker.

The notifier runs with MAIL_RETRY_BASE_SECONDS=0.5 and MAIL_RETRY_MAX_SECONDS=2 (conftest), so a
temporary failure is retried after about 0.5, 1, 2, 2, ... seconds, and the mail is dead after
MAIL_MAX_ATTEMPTS attempts (about 12 s at the default 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from fault_tools import (
    REMINDER,
    REQUIRED,
    DeadLetterTap,
    MailWatch,
    counter_total,
    eventually,
    json_records,
    new_users,
    notifications,
    notifier_knows,
    require_all,
    schema,
    senders,
)
from invariants import check_and_record, mark
from mfaplane_contracts import identity_events, mfa_events
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_devstack import clear_refusals, ensure_pki, refuse_recipient
from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_notifier import mail_loop, mail_queue
from mfaplane_notifier.__main__ import SPEC as NOTIFIER
from mfaplane_notifier.mail_loop import MailLoop
from mfaplane_notifier.settings import NotifierSettings
from mfaplane_notifier.smtp import SmtpServer
from trust_tools import signing_settings

pytestmark = pytest.mark.slow
SETTLE_SECONDS = 2  # after the last expected mail, time for a duplicate to show up if there were one


@pytest.fixture(autouse=True)
def embedded_catcher(stack) -> None:
    """These faults are injected through the embedded SMTP catcher (its process and its Maildir)."""
    if not isinstance(stack.infra.maildir, Path) or "smtp" not in stack.supervisor.names():
        pytest.skip("needs the embedded SMTP catcher (SMTP_URL is set)")


def max_attempts(stack) -> int:
    return int(stack.service_env("notifier").get("MAIL_MAX_ATTEMPTS", "8"))


async def test_an_smtp_outage_within_the_retry_budget_delivers_every_mail_once(stack, admin) -> None:
    since = await mark(stack)
    mail = MailWatch(stack.infra.maildir)
    users = await new_users(admin, 5)
    ids, emails = [u for u, _ in users], [e for _, e in users]

    stack.take_down("smtp")
    try:
        await require_all(admin, ids, 7)

        async def each_failed_three_times():
            rows = await notifications(stack, ids, "required")
            assert all(r["status"] == "pending" for r in rows.values()), {k: r["status"] for k, r in rows.items()}
            return len(rows) == len(ids) and all(r["attempts"] >= 3 for r in rows.values()) and rows

        await eventually(each_failed_three_times, 30, "every notification failed three times while SMTP is down")
        assert mail.count() == 0
    finally:
        stack.restart("smtp")

    async def all_sent():
        rows = await notifications(stack, ids, "required")
        return all(r["status"] == "sent" for r in rows.values()) and rows

    rows = await eventually(all_sent, 30, "every notification sent once SMTP is back")
    await asyncio.sleep(SETTLE_SECONDS)
    assert mail.subjects(emails) == {e: Counter({REQUIRED: 1}) for e in emails}
    assert all(r["attempts"] >= 4 and r["last_error"] is None for r in rows.values()), rows
    await check_and_record(stack, "SMTP server down while mail was due, within the retry budget",
                           "5 users required while it was down", since)


async def test_a_relay_whose_certificate_fails_holds_the_mail_past_its_attempts_then_sends_it(
        stack, admin, tmp_path) -> None:
    """An impostor relay, or a CA that was not updated: nothing goes out in clear and nothing is dead
    after MAIL_MAX_ATTEMPTS; the mail waits (MAIL_WAIT_MAX_SECONDS) and leaves once the CA is right:
    the restart that puts it right tries the waiting mails at once, whatever their back-off has grown to."""
    if stack.infra.smtp_ca_file is None:
        pytest.skip("needs the embedded catcher's TLS")
    since = await mark(stack)
    mail = MailWatch(stack.infra.maildir)
    users = await new_users(admin, 3)
    ids, emails = [u for u, _ in users], [e for _, e in users]
    await notifier_knows(stack, ids)
    wrong_ca = ensure_pki(tmp_path / "other-pki", (), apis={"smtp": ()}).ca
    attempts = 2  # a small budget, so that outliving it takes seconds
    stack.restart("notifier", {"SMTP_CA_FILE": str(wrong_ca), "MAIL_MAX_ATTEMPTS": str(attempts)})
    try:
        await require_all(admin, ids, 7)

        async def tried_past_the_attempt_budget():
            rows = await notifications(stack, ids, "required")
            assert all(r["status"] == "pending" and r["attempts"] == 0 for r in rows.values()), rows
            return (len(rows) == len(ids) and all(r["waiting_since"] is not None for r in rows.values())
                    and all("certificate not trusted" in (r["last_error"] or "") for r in rows.values()) and rows)

        await eventually(tried_past_the_attempt_budget, 30, "every mail refused by the relay's certificate")
        await asyncio.sleep(attempts * 2)  # as long as MAIL_MAX_ATTEMPTS' retries would last
        rows = await notifications(stack, ids, "required")
        assert all(r["status"] == "pending" and r["attempts"] == 0 for r in rows.values()), rows
        assert mail.count() == 0
    finally:
        stack.restart("notifier", {"SMTP_CA_FILE": str(stack.infra.smtp_ca_file)})

    async def all_sent():
        rows = await notifications(stack, ids, "required")
        return all(r["status"] == "sent" for r in rows.values()) and rows

    await eventually(all_sent, 30, "every notification sent once the relay's CA is right")
    await asyncio.sleep(SETTLE_SECONDS)
    assert mail.subjects(emails) == {e: Counter({REQUIRED: 1}) for e in emails}
    await check_and_record(stack, "SMTP relay with a certificate the notifier does not trust",
                           "3 users required while it was so", since)


async def test_refused_mailboxes_are_dead_lettered_while_other_mail_flows(stack, admin) -> None:
    since = await mark(stack)
    maildir = stack.infra.maildir
    mail = MailWatch(maildir)
    notifier = stack.metrics_url("notifier")
    dead_before = await counter_total(notifier, "mfaplane_notifications_total", outcome="dead")
    users = await new_users(admin, 7)
    (gone_id, gone), (busy_id, busy) = users[:2]
    others = users[2:]
    other_ids, other_emails = [u for u, _ in others], [e for _, e in others]
    await notifier_knows(stack, [u for u, _ in users])  # so that each attempt below is an SMTP attempt
    refuse_recipient(maildir, gone)  # 550: the mailbox does not exist, for good
    refuse_recipient(maildir, busy, "450 4.2.1 Mailbox busy, try again later")  # never accepted: over budget
    try:
        async with DeadLetterTap(stack.kafka_client_options(), "notifier") as tap:
            await require_all(admin, [u for u, _ in users], 7)

            async def others_sent_and_gone_dead():
                rows = await notifications(stack, [u for u, _ in users], "required")
                done = (len(rows) == len(users) and rows[gone_id]["status"] == "dead"
                        and all(rows[u]["status"] == "sent" for u in other_ids))
                return done and rows

            rows = await eventually(others_sent_and_gone_dead, 30, "the others' mail sent, the 550 one dead")
            # the other mail went out while the busy mailbox was still being retried
            assert rows[busy_id]["status"] == "pending" and rows[busy_id]["attempts"] < max_attempts(stack)

            async def busy_dead():
                row = (await notifications(stack, [busy_id], "required"))[busy_id]
                return row["status"] == "dead" and row

            busy_row = await eventually(busy_dead, 60, "the 450 mailbox's notification dead after its retries")
            letters = json_records(await tap.records_since())
    finally:
        clear_refusals(maildir)

    gone_row = rows[gone_id]
    assert (gone_row["attempts"], gone_row["last_error"]) == (1, "[550]")
    assert (busy_row["attempts"], busy_row["last_error"]) == (max_attempts(stack), "[450]")
    assert all(rows[u]["attempts"] == 1 for u in other_ids)

    ours = {str(gone_row["event_id"]), str(busy_row["event_id"])}
    parked = sorted((r["principal_id"], r["kind"], r["error"]) for r in letters if r.get("event_id") in ours)
    assert parked == sorted([(gone_id, "required", "[550]"), (busy_id, "required", "[450]")])
    dead_after = await counter_total(notifier, "mfaplane_notifications_total", outcome="dead")
    assert dead_after - dead_before == 2

    await asyncio.sleep(SETTLE_SECONDS)
    assert mail.subjects([gone, busy, *other_emails]) == {
        gone: Counter(), busy: Counter(), **{e: Counter({REQUIRED: 1}) for e in other_emails}
    }
    await check_and_record(stack, "SMTP refusing two mailboxes (550 for good, 450 beyond the retry budget)",
                           "7 users required, 2 of them refused", since)


async def test_a_notifier_killed_mid_batch_loses_nothing_and_repeats_at_most_its_leases(stack, admin) -> None:
    since = await mark(stack)
    users = await new_users(admin, 30)
    ids, emails = [u for u, _ in users], [e for _, e in users]
    mail = MailWatch(stack.infra.maildir)

    requiring = asyncio.create_task(require_all(admin, ids, 7))

    async def some_mail_arrived():
        return sum(sum(c.values()) for c in mail.subjects(emails).values()) >= 3

    await eventually(some_mail_arrived, 60, "the first mails of the batch", interval=0.01)
    stack.kill("notifier")
    await requiring
    rows_at_kill = await notifications(stack, ids, "required")
    marked_sent = {e for u, e in users if u in rows_at_kill and rows_at_kill[u]["status"] == "sent"}
    await asyncio.sleep(0.5)  # a message whose DATA the catcher had in full is stored even though the sender died
    stored = {e for e, c in mail.subjects(emails).items() if c[REQUIRED]}
    # The documented window: accepted by SMTP, not yet marked sent. One sender holds one mail at a time.
    in_window = stored - marked_sent
    print(f"\nkilled the notifier with {len(stored)}/30 mails stored, {len(marked_sent)} marked sent; "
          f"queue at kill: {Counter(r['status'] for r in rows_at_kill.values())} of {len(rows_at_kill)} queued")
    assert 0 < len(stored) < len(ids), "the kill did not land mid-batch"
    assert marked_sent <= stored and len(in_window) <= senders(stack)
    # The mail the killed process had claimed waits for its leases (3 SMTP timeouts + 30 s of the
    # database's clock): they end here, as if that time had passed.
    leased = await end_leases(stack, ids)
    assert in_window <= {e for u, e in users if u in leased}, "a mail sent, not marked sent, is held by a lease"

    stack.restart("notifier")
    stack.wait_for_group("notifier", members=1)

    async def all_sent():
        rows = await notifications(stack, ids, "required")
        return len(rows) == len(ids) and all(r["status"] == "sent" for r in rows.values()) and rows

    await eventually(all_sent, 90, "every notification sent after the restart", interval=0.5)
    await asyncio.sleep(SETTLE_SECONDS)
    got = mail.subjects(emails)
    duplicates = {e: got[e][REQUIRED] - 1 for e in emails if got[e][REQUIRED] > 1}
    print(f"after the restart: {sum(1 for e in emails if got[e][REQUIRED])}/30 delivered, duplicates {duplicates}")
    assert all(set(c) == {REQUIRED} for c in got.values()), got  # every email present, nothing else
    assert set(duplicates) <= in_window and set(duplicates.values()) <= {1}, (duplicates, in_window)
    await check_and_record(stack, "notifier SIGKILLed mid-batch, restarted",
                           f"30 users required at once, {len(stored)} mails stored at the kill", since,
                           mail_window=len(in_window))


async def end_leases(stack, principal_ids: list[str]) -> set[str]:
    """Ends the leases still held on these principals' pending mail; the principals whose mail was leased."""
    async with schema(stack, "notifier") as conn:
        rows = await conn.fetch("UPDATE notifications SET claimed_until = now() WHERE principal_id = ANY($1::uuid[]) "
                                "AND status = 'pending' AND claimed_until > now() RETURNING principal_id",
                                principal_ids)
    return {str(row["principal_id"]) for row in rows}


@pytest.mark.parametrize("timer_version", [1, 2], ids=["timer v1, by its deadline", "timer v2, by its version"])
async def test_a_reminder_that_overtakes_the_event_of_its_deadline_waits_for_it(stack, timer_version) -> None:
    """The scheduler's topic is not ordered with the mfa topic: a reminder due at once (a one-day
    period) can reach the notifier before the MFARequired that set its deadline. It must wait for
    it, not be judged stale and skipped. The real mail loop on its own schema, the real catcher. A
    timer fired before v2 (still on the topic at the upgrade) says only its deadline."""
    async with own_notifier(stack) as (pool, loop, settings):
        mail = MailWatch(stack.infra.maildir)
        user, email = uuid.uuid4(), f"order-{uuid.uuid4().hex[:8]}@example.com"
        now = datetime.now(UTC)
        deadline = now + timedelta(days=1)
        required = mfa_events.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                          enrollment_days=1, deadline=deadline)
        reminder = mfa_events.EnrollmentExpiring(principal_id=user, scope="user_portal", deadline=deadline, due_at=now,
                                                 enrollment_version=1)
        await _receive(pool, identity_events.UserCreated(user_id=user, email=email, name="Ada"), str(user))
        overtaking = _envelope(reminder, f"user_portal:{user}")
        if timer_version == 1:
            overtaking = overtaking.model_copy(update={"schema_version": 1, "payload": {
                name: value for name, value in overtaking.payload.items() if name != "enrollment_version"}})
        await _handle(pool, overtaking)  # overtook MFARequired
        for _ in range(settings.mail_max_attempts + 1):  # waiting spends no attempt: more waits than attempts
            assert await loop.send_next()
            await pool.execute("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")
        row = await pool.fetchrow("SELECT status, attempts, last_error FROM notifications WHERE kind = 'reminder'")
        assert dict(row) == {"status": "pending", "attempts": 0, "last_error": "enrollment not known yet"}

        await _receive(pool, required, f"user_portal:{user}")
        await pool.execute("UPDATE notifications SET next_attempt_at = now()")  # no need to wait for the backoff
        while await loop.send_next():
            pass
        statuses = dict(await pool.fetch("SELECT kind, status FROM notifications"))
        assert statuses == {"reminder": "sent", "required": "sent"}
        await asyncio.sleep(SETTLE_SECONDS)
        assert mail.subjects([email]) == {email: Counter({REQUIRED: 1, REMINDER: 1})}


async def test_a_reminder_waits_for_the_enrollment_version_that_set_it_not_only_for_its_deadline(stack) -> None:
    """Required by D (v1), set up (v2), reset to the same D (v3): the reminder of v3 overtakes v3. The
    notifier has seen D already, but with the user set up; judged on that it would be skipped as stale,
    and the user reset to set up again would hear nothing. It names v3, so it waits for v3, then goes."""
    async with own_notifier(stack) as (pool, loop, _):
        mail = MailWatch(stack.infra.maildir)
        user, email = uuid.uuid4(), f"reset-{uuid.uuid4().hex[:8]}@example.com"
        enrollment = f"user_portal:{user}"
        deadline = datetime.now(UTC) + timedelta(days=1)
        await _receive(pool, identity_events.UserCreated(user_id=user, email=email, name="Ada"), str(user))
        await _receive(pool, mfa_events.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                                    enrollment_days=1, deadline=deadline), enrollment, version=1)
        await _receive(pool, mfa_events.TOTPEnrolled(principal_id=user, scope="user_portal", secret_id=uuid.uuid4(),
                                                     time_step=1, recovery_codes_issued=10), enrollment, version=2)
        await pool.execute("UPDATE notifications SET status = 'sent'")  # those mails are not this test's
        await _receive(pool, mfa_events.EnrollmentExpiring(principal_id=user, scope="user_portal", deadline=deadline,
                                                           due_at=datetime.now(UTC), enrollment_version=3), enrollment)
        assert await loop.send_next()
        row = await pool.fetchrow("SELECT status, last_error FROM notifications WHERE kind = 'reminder'")
        assert dict(row) == {"status": "pending", "last_error": "enrollment not known yet"}

        await _receive(pool, mfa_events.MFAReset(principal_id=user, scope="user_portal", enrollment_days=1,
                                                 deadline=deadline, shredded_secret_id=None), enrollment, version=3)
        await pool.execute("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")
        while await loop.send_next():
            pass
        assert await pool.fetchval("SELECT status FROM notifications WHERE kind = 'reminder'") == "sent"
        await asyncio.sleep(SETTLE_SECONDS)
        assert mail.subjects([email])[email][REMINDER] == 1


async def test_a_mail_whose_recipient_stays_unknown_goes_dead_after_the_wait_limit(stack) -> None:
    async with own_notifier(stack, mail_wait_max_seconds=0) as (pool, loop, _):
        user = uuid.uuid4()
        deadline = datetime.now(UTC) + timedelta(days=1)
        await _receive(pool, mfa_events.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                                    enrollment_days=1, deadline=deadline), f"user_portal:{user}")
        assert await loop.send_next()  # starts waiting
        await pool.execute("UPDATE notifications SET next_attempt_at = now()")
        assert await loop.send_next()  # waited longer than the limit (0 s)
        row = await pool.fetchrow("SELECT status, attempts, last_error FROM notifications")
        assert dict(row) == {"status": "dead", "attempts": 0, "last_error": "recipient not known yet"}


async def test_a_notifier_that_starts_tries_the_waiting_mail_at_once(stack) -> None:
    """A mail whose wait has backed off for an hour leaves as soon as a notifier starts (the rollout
    that fixed the relay's settings), while a mail backing off after a failed attempt keeps its time."""
    async with own_notifier(stack) as (pool, loop, _):
        waiting, failing = uuid.uuid4(), uuid.uuid4()
        deadline = datetime.now(UTC) + timedelta(days=1)
        for user in (waiting, failing):
            await _receive(pool, mfa_events.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                                        enrollment_days=1, deadline=deadline), f"user_portal:{user}")
        assert await loop.send_next()  # neither recipient is known: both start waiting
        await pool.execute("UPDATE notifications SET next_attempt_at = now() + interval '1 hour'")
        await pool.execute("UPDATE notifications SET waiting_since = NULL, attempts = 1 WHERE principal_id = $1",
                           failing)
        for user in (waiting, failing):
            await _receive(pool, identity_events.UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com",
                                                             name="Ada"), str(user))
        assert not await loop.send_next()  # nothing due yet

        await loop.wake_waiting()
        assert await loop.send_next()
        statuses = {row["principal_id"]: row["status"] for row in await pool.fetch("SELECT * FROM notifications")}
        assert statuses == {waiting: "sent", failing: "pending"}


async def test_a_batch_sent_slowly_checks_its_facts_again_before_each_mail(stack, monkeypatch) -> None:
    """A user deleted while a batch is being sent gets no mail from it, though the claim saw them."""
    monkeypatch.setattr(mail_loop, "FACTS_FRESH_SECONDS", 0.0)  # as if every send were slow
    async with own_notifier(stack) as (pool, loop, _):
        deadline = datetime.now(UTC) + timedelta(days=7)
        for user in (uuid.uuid4(), uuid.uuid4()):
            await _receive(pool, identity_events.UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com",
                                                             name="Ada"), str(user))
            await _receive(pool, mfa_events.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                                        enrollment_days=7, deadline=deadline), f"user_portal:{user}")
        deliver = loop._deliver

        async def deliver_then_delete_the_other(row, session) -> None:
            await deliver(row, session)
            await pool.execute("UPDATE recipients SET deleted = true WHERE principal_id <> $1", row["principal_id"])

        loop._deliver = deliver_then_delete_the_other
        assert await loop.send_next()  # one claim takes both
        assert sorted(r["status"] for r in await pool.fetch("SELECT status FROM notifications")) == ["sent", "skipped"]


async def test_events_handled_as_a_batch_leave_what_handling_them_one_by_one_does(stack) -> None:
    """Two batches over every kind of event the notifier keeps, several for one user, against the same
    events handled one at a time on another schema."""
    now = datetime.now(UTC)
    ada, bob, cy, admin = (uuid.uuid4() for _ in range(4))

    def enrollment(user: uuid.UUID, event: type[EventPayload], **fields: Any) -> Envelope:
        return _envelope(event(principal_id=user, scope="user_portal", **fields), f"user_portal:{user}")

    def required(user: uuid.UUID, days: int) -> Envelope:
        return enrollment(user, mfa_events.MFARequired, principal_kind="user", enrollment_days=days,
                          deadline=now + timedelta(days=days))

    first = [
        _envelope(identity_events.UserCreated(user_id=ada, email="ada@example.com", name="Ada"), str(ada)),
        _envelope(identity_events.UserUpdated(user_id=ada, email="ada.l@example.com", name="Ada L"), str(ada)),
        _envelope(identity_events.AdminCreated(admin_id=admin, email="root@example.com", name="Root"), str(admin)),
        _envelope(identity_events.UserCreated(user_id=bob, email="bob@example.com", name="Bob"), str(bob)),
        required(ada, 7), required(bob, 7), required(cy, 3),
        enrollment(ada, mfa_events.EnrollmentExtended, enrollment_days=9, deadline=now + timedelta(days=9)),
        _envelope(identity_events.UserDeleted(user_id=bob), str(bob)),
        enrollment(cy, mfa_events.MFARequirementRemoved),
    ]
    second = [
        enrollment(ada, mfa_events.TOTPEnrolled, secret_id=uuid.uuid4(), time_step=1, recovery_codes_issued=10),
        enrollment(ada, mfa_events.MFAReset, enrollment_days=2, deadline=now + timedelta(days=2),
                   shredded_secret_id=None),
        required(cy, 7),
        enrollment(ada, mfa_events.EnrollmentExtended, enrollment_days=9, deadline=now + timedelta(days=9)),
    ]
    async with own_notifier(stack) as (one_by_one, _, _), own_notifier(stack) as (batched, _, _):
        for envelope in first + second:
            async with one_by_one.acquire() as conn, conn.transaction():
                await mail_queue.handle_batch(conn, [envelope])
        for batch in (first, second):
            async with batched.acquire() as conn, conn.transaction():
                await mail_queue.handle_batch(conn, batch)
        tables = await _notifier_tables(batched)
        assert tables == await _notifier_tables(one_by_one)
    recipients = {row["principal_id"]: (row["email"], row["deleted"]) for row in tables["recipients"]}
    assert recipients == {ada: ("ada.l@example.com", False), bob: ("bob@example.com", True),
                          admin: ("root@example.com", False)}
    days = {row["enrollment_id"]: (row["required"], row["configured"], row["deadline"], row["seen"])
            for row in tables["enrollments"]}
    assert days == {f"user_portal:{user}": (True, False, now + timedelta(days=last),
                                            [now + timedelta(days=d) for d in seen])
                    for user, last, seen in [(ada, 9, [2, 7, 9]), (bob, 7, [7]), (cy, 7, [3, 7])]}
    assert len(tables["notifications"]) == 8


async def _notifier_tables(pool: asyncpg.Pool) -> dict[str, list[dict]]:
    queries = {
        "recipients": "SELECT principal_id, kind, email, name, deleted FROM recipients ORDER BY principal_id",
        "enrollments": "SELECT enrollment_id, required, configured, deadline, version, "
                       "ARRAY(SELECT unnest(seen_deadlines) ORDER BY 1) AS seen FROM enrollments ORDER BY 1",
        "notifications": "SELECT event_id, kind, principal_id, enrollment_id, deadline, status FROM notifications "
                         "ORDER BY event_id",
    }
    return {table: [dict(row) for row in await pool.fetch(sql)] for table, sql in queries.items()}


@contextlib.asynccontextmanager
async def own_notifier(stack, **settings: Any) -> AsyncIterator[tuple[asyncpg.Pool, MailLoop, NotifierSettings]]:
    """The real mail loop on a schema of its own (so its queue holds only the test's mail), the real catcher."""
    infra = stack.infra
    name = f"notifier_own_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, name, NOTIFIER.migration_dirs())
    pool = await db.create_pool(infra.database_url, name)
    user, password = infra.smtp_credentials()
    config = NotifierSettings(database_url=infra.database_url, database_schema=name, smtp_url=infra.smtp_url,
                              smtp_username=user, smtp_password=password,
                              smtp_ca_file=infra.smtp_env().get("SMTP_CA_FILE"),
                              kafka_bootstrap_servers=infra.kafka_bootstrap,
                              password_reset_key=stack.dev_secrets()["PASSWORD_RESET_KEY"],
                              **signing_settings(stack, "notifier"), **settings)
    loop = MailLoop(SimpleNamespace(settings=config, clock=SystemClock(), pool=pool, producer=None),
                    SmtpServer.from_url(config.smtp_url, config.smtp_username, config.smtp_password, 10,
                                        config.smtp_ca_file))
    try:
        yield pool, loop, config
    finally:
        await pool.close()
        async with schema(stack, "public") as conn:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')


async def _receive(pool, event: EventPayload, aggregate_id: str, version: int = 1) -> None:
    await _handle(pool, _envelope(event, aggregate_id, version))


async def _handle(pool, envelope: Envelope) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await mail_queue.handle_batch(conn, [envelope])


def _envelope(event: EventPayload, aggregate_id: str, version: int = 1) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(), type=event.event_type, schema_version=event.schema_version,
        aggregate_type=event.aggregate_type, aggregate_id=aggregate_id, aggregate_version=version,
        occurred_at=datetime.now(UTC), correlation_id=uuid.uuid4(),
        actor="test", payload=event.model_dump(mode="json"),
    )
