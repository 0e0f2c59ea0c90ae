"""Sends queued notifications: each at most once, retried while the SMTP server is unavailable.

A sender claims a batch of due notifications by giving them a lease (`claimed_until`, committed
at once), so replicas and concurrent senders never take the same one and no row lock is held while
the SMTP server is talked to. For each in turn it checks the notification still makes sense, sends
it on the sender's SMTP connection (kept open while there is mail), and marks it sent. It starts a
notification only while the lease has at least one mail's worst case left, and hands the rest back
otherwise. The documented window: if the process dies (or cannot reach the database) after the
SMTP server accepted a message and before it is marked sent, that notification is sent again once
its lease runs out. Every other failure either sends nothing or has recorded the send.

A reminder or expiry comes on the scheduler's topic and can overtake the mfa event that set its
deadline; until the notifier has seen that event (the timer names its version; one fired before
timer events v2, only its deadline) it waits like a mail to a recipient not known yet, not judged
stale. Waiting is no SMTP failure and spends no attempt (a broker rebuilt from the
event stores can keep a topic behind for minutes); it ends in `dead` only after MAIL_WAIT_MAX_SECONDS.
A reminder whose deadline has passed (a scheduler or notifier was down) is skipped.

Temporary failures (server down, 4xx) back off exponentially with jitter; after the configured
number of attempts, or at once on a permanent 5xx, the notification is marked dead, counted, and
put on the notifier's dead-letter topic, and the others flow on. Leases and retries follow the
database's wall clock (delivery happens in real time); what an email says follows the service
clock.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid

import asyncpg
from prometheus_client import Counter

from mfaplane_chassis.service import Runtime
from mfaplane_contracts import reset_tokens
from mfaplane_contracts.topics import dead_letter_topic
from mfaplane_eventing import loops
from mfaplane_notifier.emails import Recipient, render
from mfaplane_notifier.mail_queue import FACTS, facts_of
from mfaplane_notifier.notifications import still_holds
from mfaplane_notifier.smtp import PermanentFailure, RelayRefused, SmtpServer, SmtpSession, TemporaryFailure

log = logging.getLogger(__name__)
MAILS = Counter("mfaplane_notifications_total", "Notifications by outcome", ["kind", "outcome"])
SMTP_FAILURES = Counter("mfaplane_smtp_failures_total", "Failed SMTP attempts", ["permanent"])
CLAIM = (
    "WITH claimed AS ("
    "  UPDATE notifications SET claimed_until = now() + make_interval(secs => $1) WHERE event_id IN ("
    "    SELECT event_id FROM notifications WHERE status = 'pending' "
    "    AND greatest(next_attempt_at, claimed_until) <= now() "
    "    ORDER BY greatest(next_attempt_at, claimed_until) LIMIT $2 FOR UPDATE SKIP LOCKED"
    "  ) RETURNING *"
    f") SELECT n.*, {FACTS}"
)
# The facts of the mails still to send, read again (see mail_queue.FACTS).
FACTS_AGAIN = f"WITH claimed AS (SELECT * FROM notifications WHERE event_id = ANY($1)) SELECT n.*, {FACTS}"
LEASE_SLACK_SECONDS = 30.0  # beyond one mail's worst case (three SMTP timeouts): database round trips
FACTS_FRESH_SECONDS = 1.0  # how old a claimed batch's facts may be when a mail is sent on them


class MailLoop:
    def __init__(self, runtime: Runtime, server: SmtpServer) -> None:
        self._runtime = runtime
        self._pool = runtime.pool
        self._server = server
        self._settings = runtime.settings

    def tasks(self) -> list:
        return [self.wake_waiting(), *(self._sender() for _ in range(self._settings.mail_senders))]

    async def wake_waiting(self) -> None:
        """A start is when the relay's settings may have changed (its CA, its credentials, its address):
        the mails waiting on it are tried at once, not after a back-off that has grown to minutes."""
        try:
            await self._pool.execute(
                "UPDATE notifications SET next_attempt_at = now() "
                "WHERE status = 'pending' AND waiting_since IS NOT NULL AND next_attempt_at > now()")
        except loops.EXPECTED_FAILURES as error:  # they are tried after their back-off then
            log.warning("could not wake the waiting mails", extra={"error": repr(error)})

    async def _sender(self) -> None:
        session = self._server.session()

        async def step() -> bool:
            sent = False
            try:
                sent = await self.send_next(session)
                return sent
            finally:
                if not sent:
                    await session.close()  # idle or failing: servers drop idle clients anyway

        await loops.repeat("mail loop", step, self._settings.mail_tick_seconds)

    async def send_next(self, session: SmtpSession | None = None) -> bool:
        """Claims the next due notifications and delivers them; False if none was due."""
        one_mail = self._settings.smtp_timeout_seconds * 3
        claimed_at = time.monotonic()
        rows = await self._pool.fetch(CLAIM, one_mail + LEASE_SLACK_SECONDS, self._settings.mail_batch)
        if not rows:
            return False
        own_session = session is None
        session = session or self._server.session()
        try:
            pending, read_at = list(rows), claimed_at
            while pending:
                if time.monotonic() - claimed_at > LEASE_SLACK_SECONDS / 2:
                    # the lease might run out during the next one: someone else may take them then
                    await self._release(pending)
                    break
                if time.monotonic() - read_at > FACTS_FRESH_SECONDS:  # a slow server: the facts may have changed
                    pending = list(await self._pool.fetch(FACTS_AGAIN, [row["event_id"] for row in pending]))
                    read_at = time.monotonic()
                await self._deliver(pending.pop(0), session)
        finally:
            if own_session:
                await session.close()
        return True

    async def _deliver(self, row: asyncpg.Record, session: SmtpSession) -> None:
        facts = facts_of(row)
        if facts is None:
            await self._wait(row, "recipient not known yet")
            return
        if not facts.deleted and row["kind"] in ("reminder", "expired") and not facts.deadline_seen:
            # the scheduler's event overtook the mfa event that set this deadline (another topic)
            await self._wait(row, "enrollment not known yet")
            return
        now = self._runtime.clock.now()
        if facts.deleted or not still_holds(row["kind"], row["deadline"], facts.enrollment, now):
            await self._finish(row, "skipped")
            return
        to = Recipient(facts.email, facts.name, is_admin=facts.kind == "admin")
        portal = self._settings.admin_portal_url if to.is_admin else self._settings.user_portal_url
        message = render(row["kind"], to, row["deadline"], now, self._settings.mail_from, portal,
                         paused_until=row["paused_until"], recovery_codes_left=row["recovery_codes_left"],
                         reset_link=self._reset_link(portal, row["reset_id"]))
        try:
            await session.send(message)
        except RelayRefused as failure:
            SMTP_FAILURES.labels("false").inc()
            await self._wait(row, str(failure))
        except (TemporaryFailure, PermanentFailure) as failure:
            await self._failed(row, failure)
        else:
            await self._finish(row, "sent")

    def _reset_link(self, portal: str, reset_id: uuid.UUID | None) -> str | None:
        """The portal's page for a new password, the token in the fragment: browsers send that to no
        server, so it stays out of access logs and Referer headers."""
        if reset_id is None:
            return None
        return f"{portal.rstrip('/')}/#reset={reset_tokens.token(self._settings.password_reset_key, reset_id)}"

    async def _release(self, rows: list[asyncpg.Record]) -> None:
        await self._pool.execute("UPDATE notifications SET claimed_until = NULL WHERE event_id = ANY($1)",
                                 [row["event_id"] for row in rows])

    async def _finish(self, row: asyncpg.Record, status: str, error: str | None = None) -> None:
        await self._pool.execute(
            "UPDATE notifications SET status = $2, claimed_until = NULL, last_error = $3, "
            "attempts = attempts + $4, sent_at = CASE WHEN $2::text = 'sent' THEN now() END WHERE event_id = $1",
            row["event_id"], status, error, 0 if status == "skipped" else 1,
        )
        MAILS.labels(row["kind"], status).inc()

    async def _failed(self, row: asyncpg.Record, failure: Exception) -> None:
        permanent = isinstance(failure, PermanentFailure)
        SMTP_FAILURES.labels(str(permanent).lower()).inc()
        attempts = row["attempts"] + 1
        if permanent or attempts >= self._settings.mail_max_attempts:
            await self._finish(row, "dead", str(failure))
            await self._dead_letter(row, str(failure))
            return
        delay = min(self._settings.mail_retry_base_seconds * 2 ** (attempts - 1), self._settings.mail_retry_max_seconds)
        await self._pool.execute(
            "UPDATE notifications SET attempts = $2, claimed_until = NULL, last_error = $4, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE event_id = $1",
            row["event_id"], attempts, delay * (0.5 + random.random()), str(failure),
        )
        log.warning("notification not sent, will retry", extra={"event_id": str(row["event_id"]),
                                                                 "attempts": attempts, "error": str(failure)})

    async def _wait(self, row: asyncpg.Record, reason: str) -> None:
        """Tries again later, backing off with the time waited so far, until MAIL_WAIT_MAX_SECONDS."""
        settings = self._settings
        status = await self._pool.fetchval(
            "UPDATE notifications SET claimed_until = NULL, last_error = $2, "
            "  waiting_since = coalesce(waiting_since, now()), "
            "  status = CASE WHEN now() - waiting_since > make_interval(secs => $3) THEN 'dead' ELSE status END, "
            "  next_attempt_at = now() + least(greatest(make_interval(secs => $4), (now() - waiting_since) / 2), "
            "                                  make_interval(secs => $5)) "
            "WHERE event_id = $1 RETURNING status",
            row["event_id"], reason, settings.mail_wait_max_seconds, settings.mail_retry_base_seconds,
            settings.mail_retry_max_seconds,
        )
        if status == "dead":
            MAILS.labels(row["kind"], status).inc()
            await self._dead_letter(row, reason)

    async def _dead_letter(self, row: asyncpg.Record, error: str) -> None:
        record = {"event_id": str(row["event_id"]), "kind": row["kind"], "principal_id": str(row["principal_id"]),
                  "error": error}
        try:
            await self._runtime.producer.send_and_wait(dead_letter_topic("notifier").name, json.dumps(record).encode(),
                                                       key=str(row["principal_id"]).encode())
        except Exception as error:  # noqa: BLE001 - the row already says dead; the topic is a convenience copy
            log.error("could not publish dead letter", extra={"error": repr(error)})
