"""Sends queued notifications: each at most once, retried while the SMTP server is unavailable.

A sender claims one due notification by giving it a lease (`claimed_until`, committed at once),
so replicas and concurrent senders never take the same one and no row lock is held while the
SMTP server is talked to. It then checks the notification still makes sense, sends it, and marks
it sent. The documented window: if the process dies (or cannot reach the database) after the SMTP
server accepted the message and before it is marked sent, the notification is sent again once its
lease runs out. Every other failure either sends nothing or has recorded the send.

A reminder or expiry comes on the scheduler's topic and can overtake the mfa event that set its
deadline; until the notifier has seen that deadline it is retried like an unknown recipient, not
judged stale. A reminder whose deadline has passed (a scheduler or notifier was down) is skipped.

Temporary failures (server down, 4xx) back off exponentially with jitter; after the configured
number of attempts, or at once on a permanent 5xx, the notification is marked dead, counted, and
put on the notifier's dead-letter topic, and the others flow on. Leases and retries follow the
database's wall clock (delivery happens in real time); what an email says follows the service
clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

import asyncpg
from prometheus_client import Counter

from mfaplane_contracts.topics import dead_letter_topic
from mfaplane_eventing.service import Runtime
from mfaplane_notifier.emails import Recipient, render
from mfaplane_notifier.mail_queue import deadline_seen, load_enrollment
from mfaplane_notifier.notifications import still_holds
from mfaplane_notifier.smtp import PermanentFailure, SmtpServer, TemporaryFailure

log = logging.getLogger(__name__)
MAILS = Counter("mfaplane_notifications_total", "Notifications by outcome", ["kind", "outcome"])
SMTP_FAILURES = Counter("mfaplane_smtp_failures_total", "Failed SMTP attempts", ["permanent"])
CLAIM = (
    "UPDATE notifications SET claimed_until = now() + make_interval(secs => $1) WHERE event_id = ("
    "  SELECT event_id FROM notifications WHERE status = 'pending' "
    "  AND greatest(next_attempt_at, claimed_until) <= now() "
    "  ORDER BY greatest(next_attempt_at, claimed_until) LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING *"
)


class MailLoop:
    def __init__(self, runtime: Runtime, server: SmtpServer) -> None:
        self._runtime = runtime
        self._pool = runtime.pool
        self._server = server
        self._settings = runtime.settings

    def tasks(self) -> list:
        return [self._sender() for _ in range(self._settings.mail_senders)]

    async def _sender(self) -> None:
        while True:
            try:
                if await self.send_next():
                    continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("mail loop database error", extra={"error": repr(error)})
            await asyncio.sleep(self._settings.mail_tick_seconds)

    async def send_next(self) -> bool:
        lease = self._settings.smtp_timeout_seconds * 3 + 30
        row = await self._pool.fetchrow(CLAIM, lease)
        if row is None:
            return False
        await self._deliver(row)
        return True

    async def _deliver(self, row: asyncpg.Record) -> None:
        recipient = await self._pool.fetchrow("SELECT email, name, kind, deleted FROM recipients WHERE principal_id = $1",
                                              row["principal_id"])
        if recipient is None:
            await self._failed(row, TemporaryFailure("recipient not known yet"))
            return
        if (not recipient["deleted"] and row["kind"] in ("reminder", "expired")
                and not await deadline_seen(self._pool, row["enrollment_id"], row["deadline"])):
            # the scheduler's event overtook the mfa event that set this deadline (another topic)
            await self._failed(row, TemporaryFailure("enrollment not known yet"))
            return
        enrollment = await load_enrollment(self._pool, row["enrollment_id"])
        now = self._runtime.clock.now()
        if recipient["deleted"] or not still_holds(row["kind"], row["deadline"], enrollment, now):
            await self._finish(row, "skipped")
            return
        to = Recipient(recipient["email"], recipient["name"], is_admin=recipient["kind"] == "admin")
        portal = self._settings.admin_portal_url if to.is_admin else self._settings.user_portal_url
        message = render(row["kind"], to, row["deadline"], now, self._settings.mail_from, portal)
        try:
            await self._server.send(message)
        except (TemporaryFailure, PermanentFailure) as failure:
            await self._failed(row, failure)
        else:
            await self._finish(row, "sent")

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

    async def _dead_letter(self, row: asyncpg.Record, error: str) -> None:
        record = {"event_id": str(row["event_id"]), "kind": row["kind"], "principal_id": str(row["principal_id"]),
                  "error": error}
        try:
            await self._runtime.producer.send_and_wait(dead_letter_topic("notifier").name, json.dumps(record).encode(),
                                                       key=str(row["principal_id"]).encode())
        except Exception as error:  # noqa: BLE001 - the row already says dead; the topic is a convenience copy
            log.error("could not publish dead letter", extra={"error": repr(error)})
