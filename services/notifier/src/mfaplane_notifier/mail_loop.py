"""Sends queued notifications: each at most once, retried while the SMTP server is unavailable.

A sender claims one due notification with FOR UPDATE SKIP LOCKED (so replicas and concurrent
senders never take the same one), checks it is still pending and still makes sense, sends it, and
marks it sent in the same transaction. The one window: if the process dies after the SMTP server
accepted the message and before that transaction commits, the notification is still pending and
is sent again. Every other crash either sends nothing or has recorded the send.

Temporary failures (server down, 4xx) back off exponentially with jitter; after the configured
number of attempts, or at once on a permanent 5xx, the notification is marked dead, counted, and
put on the notifier's dead-letter topic, and the others flow on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import timedelta

import asyncpg
from prometheus_client import Counter

from mfaplane_contracts.topics import dead_letter_topic
from mfaplane_eventing.service import Runtime
from mfaplane_notifier.emails import Recipient, render
from mfaplane_notifier.mail_queue import load_enrollment
from mfaplane_notifier.notifications import still_holds
from mfaplane_notifier.smtp import PermanentFailure, SmtpServer, TemporaryFailure

log = logging.getLogger(__name__)
MAILS = Counter("mfaplane_notifications_total", "Notifications by outcome", ["kind", "outcome"])
SMTP_FAILURES = Counter("mfaplane_smtp_failures_total", "Failed SMTP attempts", ["permanent"])


class MailLoop:
    def __init__(self, runtime: Runtime, server: SmtpServer) -> None:
        self._runtime = runtime
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
        now = self._runtime.clock.now()
        async with self._runtime.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT n.*, r.email, r.name, r.kind AS recipient_kind, r.deleted FROM notifications n "
                "LEFT JOIN recipients r USING (principal_id) "
                "WHERE n.status = 'pending' AND n.next_attempt_at <= $1 ORDER BY n.next_attempt_at LIMIT 1 "
                "FOR UPDATE OF n SKIP LOCKED",
                now,
            )
            if row is None:
                return False
            await self._deliver(conn, row, now)
            return True

    async def _deliver(self, conn: asyncpg.Connection, row: asyncpg.Record, now) -> None:
        if row["email"] is None:
            await self._failed(conn, row, now, TemporaryFailure("recipient not known yet"))
            return
        enrollment = await load_enrollment(conn, row["enrollment_id"])
        if row["deleted"] or not still_holds(row["kind"], row["deadline"], enrollment):
            await self._mark(conn, row, "skipped", now)
            return
        recipient = Recipient(row["email"], row["name"], is_admin=row["recipient_kind"] == "admin")
        portal = self._settings.admin_portal_url if recipient.is_admin else self._settings.user_portal_url
        message = render(row["kind"], recipient, row["deadline"], now, self._settings.mail_from, portal)
        try:
            await self._server.send(message)
        except (TemporaryFailure, PermanentFailure) as failure:
            await self._failed(conn, row, now, failure)
        else:
            await self._mark(conn, row, "sent", now)

    async def _mark(self, conn: asyncpg.Connection, row: asyncpg.Record, status: str, now, error: str | None = None):
        await conn.execute(
            "UPDATE notifications SET status = $2, sent_at = CASE WHEN $2 = 'sent' THEN $3 END, "
            "attempts = attempts + (CASE WHEN $2 = 'skipped' THEN 0 ELSE 1 END), last_error = $4 "
            "WHERE event_id = $1",
            row["event_id"], status, now, error,
        )
        MAILS.labels(row["kind"], status).inc()

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, now, failure: Exception) -> None:
        permanent = isinstance(failure, PermanentFailure)
        SMTP_FAILURES.labels(str(permanent).lower()).inc()
        attempts = row["attempts"] + 1
        if permanent or attempts >= self._settings.mail_max_attempts:
            await self._mark(conn, row, "dead", now, str(failure))
            await self._dead_letter(row, str(failure))
            return
        delay = min(self._settings.mail_retry_base_seconds * 2 ** (attempts - 1), self._settings.mail_retry_max_seconds)
        await conn.execute(
            "UPDATE notifications SET attempts = $2, next_attempt_at = $3, last_error = $4 WHERE event_id = $1",
            row["event_id"], attempts, now + timedelta(seconds=delay * (0.5 + random.random())), str(failure),
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
