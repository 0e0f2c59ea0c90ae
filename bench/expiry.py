"""Scenario 6, expiry storm: N enrollment deadlines passing at the same instant.

Before (not timed): N users are created and required in one bulk action with a 1-day period; the
run waits until the scheduler holds N expiry timers, the immediate 24-hour reminders have fired
and every "MFA required" and reminder email has been delivered (the notifier's queue is empty).
Timed: the services' fake clock (MFAPLANE_FAKE_CLOCK_FILE) jumps one day and a minute on; then
(a) until the scheduler's event store holds N EnrollmentExpired events and its outbox is empty
(every one published to Kafka), and (b) until N more emails are at the SMTP catcher (with an
external SMTP server: until the notifier has marked N expiry emails sent).

Raw limits: (a) storing and publishing N events with the bare clients (bench.raw); (b) sending N
real "expired" emails (rendered by the notifier's own template) with aiosmtplib from as many
concurrent senders as the notifier has (MAIL_SENDERS), each on one reused connection like the notifier.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench import bulk, raw
from bench.harness import BenchStack
from bench.runner import Measure, Row, log, wait_until
from bench.users import create_users, new_tag
from mfaplane_devstack import read_mail
from mfaplane_notifier.emails import SUBJECTS, Recipient, render
from mfaplane_notifier.settings import NotifierSettings
from mfaplane_notifier.smtp import SmtpServer

TARGET_EVENTS_SECONDS = 10.0
TARGET_MAIL_SECONDS = 30.0
POLL_SECONDS = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10_000, help="deadlines passing at once (default 10,000)")


def mail_count(maildir: Path) -> int:
    return sum(1 for sub in ("new", "cur") if (maildir / sub).is_dir() for _ in os.scandir(maildir / sub))


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    n = args.users
    bench.services()
    admin = bench.api("admin")
    conn = await asyncpg.connect(bench.database_url)
    try:
        users = await create_users(admin, new_tag("expiry"), n)
        ids = list(users.ids)
        await bulk.require_all(admin, users.tag, [str(i) for i in ids], 1)
        await settle(conn, ids)
        await bench.quiesce()
        timing = await storm(bench, conn, n)
    finally:
        await conn.close()
        await admin.close()
    maildir = bench.infra().maildir
    if maildir is not None:
        emails = set(users.emails)
        expired = [m for m in read_mail(maildir)
                   if str(m["Subject"]).startswith(SUBJECTS["expired"]) and str(m["To"]) in emails]
        if len(expired) != n:
            raise RuntimeError(f"{len(expired)} expiry emails to the run's users at the catcher; expected {n}")
    limit = await raw.store_and_publish(bench, n)
    mail_rate = await raw_mail_rate(bench, n)
    log(f"expiry: events published after {timing['events']:.1f} s, emails after {timing['emails']:.1f} s; "
        f"raw {limit.seconds:.1f} s and {n / mail_rate:.1f} s")
    return [
        Row("6 expiry storm: events", f"{n:,} deadlines at once",
            Measure(timing["events"], "s", "lower", detail=f"{n / timing['events']:,.0f} events/s"),
            Measure(limit.seconds, "s", "lower", "asyncpg COPY + aiokafka produce of as many events"),
            target=f"<= {TARGET_EVENTS_SECONDS:.0f} s", met=timing["events"] <= TARGET_EVENTS_SECONDS, notes=timing),
        Row("6 expiry storm: emails", f"{n:,} deadlines at once",
            Measure(timing["emails"], "s", "lower", detail=f"{n / timing['emails']:,.0f} emails/s"),
            Measure(n / mail_rate, "s", "lower", f"aiosmtplib sends of as many emails, {senders()} senders"),
            target=f"<= {TARGET_MAIL_SECONDS:.0f} s", met=timing["emails"] <= TARGET_MAIL_SECONDS,
            notes={"mail_via": "catcher" if maildir else "notifications table"}),
    ]


async def settle(conn: asyncpg.Connection, ids: list) -> None:
    """Waits until every expiry timer is set and every earlier email for these users is out."""

    async def settled() -> bool:
        timers = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE timer = 'expiry') AS expiry, "
            "count(*) FILTER (WHERE timer <> 'expiry') AS other "
            "FROM scheduler.deadline_timers WHERE principal_id = ANY($1::uuid[])", ids)
        mail = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) AS queued "
            "FROM notifier.notifications WHERE principal_id = ANY($1::uuid[])", ids)
        done = (timers["expiry"], timers["other"], mail["pending"]) == (len(ids), 0, 0)
        return done and mail["queued"] >= 2 * len(ids)  # the "required" and reminder emails

    started = time.monotonic()
    await wait_until(settled, 1800, "reminders and emails before the storm", 1.0)
    log(f"expiry: {len(ids)} expiry timers set and earlier emails delivered after {time.monotonic() - started:.1f} s")


async def storm(bench: BenchStack, conn: asyncpg.Connection, n: int) -> dict[str, float]:
    maildir = bench.infra().maildir
    count_expired = "SELECT count(*) FROM scheduler.events WHERE type = 'EnrollmentExpired'"
    expired_before = await conn.fetchval(count_expired)
    sent_query = "SELECT count(*) FROM notifier.notifications WHERE kind = 'expired' AND status = 'sent'"
    mail_before = mail_count(maildir) if maildir else await conn.fetchval(sent_query)

    async def mails() -> int:
        return (mail_count(maildir) if maildir else await conn.fetchval(sent_query)) - mail_before

    timing: dict[str, float] = {}
    started = time.monotonic()
    bench.advance_clock(timedelta(days=1, minutes=1))
    deadline = started + 1800
    while len(timing) < 3 and time.monotonic() < deadline:
        now = time.monotonic() - started
        if "stored" not in timing and await conn.fetchval(count_expired) - expired_before >= n:
            timing["stored"] = now
        if "stored" in timing and "events" not in timing \
                and not await conn.fetchval("SELECT count(*) FROM scheduler.outbox"):
            timing["events"] = now
        if "emails" not in timing and await mails() >= n:
            timing["emails"] = now
        await asyncio.sleep(POLL_SECONDS)
    if len(timing) < 3:
        raise TimeoutError(f"expiry storm incomplete after 30 min: {timing}")
    return timing


def senders() -> int:
    return int(os.environ.get("MAIL_SENDERS") or NotifierSettings.model_fields["mail_senders"].default)


async def raw_mail_rate(bench: BenchStack, n: int) -> float:
    infra = bench.infra()
    server = SmtpServer.from_url(infra.smtp_url, *infra.smtp_credentials(), 10.0, infra.smtp_env().get("SMTP_CA_FILE"))
    now = datetime.now(UTC)
    messages = [render("expired", Recipient(f"raw-{i}@bench.example.com", f"Raw {i}", False),
                       now - timedelta(minutes=1), now, "MFA <mfa@localhost>", "http://127.0.0.1/portal")
                for i in range(n)]

    async def sender(share: list) -> None:
        session = server.session()
        try:
            for message in share:
                await session.send(message)
        finally:
            await session.close()

    count = senders()
    started = time.perf_counter()
    await asyncio.gather(*(sender(messages[k::count]) for k in range(count)))
    return n / (time.perf_counter() - started)
