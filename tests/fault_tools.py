"""Helpers of the fault tests (tests/test_*faults*.py): waiting, reading the services' tables, mail and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from mfaplane_contracts.topics import dead_letter_topic
from mfaplane_devstack import envelope_recipients, read_new, stored_ids
from mfaplane_devstack.mail import RECEIVED_AT
from mfaplane_notifier.settings import NotifierSettings
from mfaplane_scheduler.firing import timer_aggregate_id
from portal_flows import PASSWORD, new_user, ok

T = TypeVar("T")

REQUIRED = "Action needed: set up multi-factor authentication"
REMINDER = "Reminder: your MFA enrollment period ends soon"
EXPIRED = "Your MFA enrollment period has expired"


async def eventually(probe: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.1,
                     done: Callable[[T], bool] = bool) -> T:
    """The first value of `probe` (sync or async) that is `done` (default: truthy); fails after `timeout`
    seconds with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}; last seen: {value!r}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def schema(stack, name: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to one service's schema, for looking at what the service wrote."""
    conn = await asyncpg.connect(stack.infra.database_url, server_settings={"search_path": name})
    try:
        yield conn
    finally:
        await conn.close()


async def new_users(admin: httpx.AsyncClient, count: int, **require: Any) -> list[tuple[str, str]]:
    """`count` fresh users, made concurrently; each (id, email)."""
    return list(await asyncio.gather(*(new_user(admin, **require) for _ in range(count))))


async def require_all(admin: httpx.AsyncClient, user_ids: Iterable[str], enrollment_days: int | None) -> None:
    await asyncio.gather(*(_require(admin, user_id, enrollment_days) for user_id in user_ids))


async def _require(admin: httpx.AsyncClient, user_id: str, enrollment_days: int | None) -> None:
    ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": enrollment_days}))


class MailWatch:
    """The mail caught from now on: by the catcher (a Maildir, read file by file, as the session's
    Maildir grows) or by Mailpit (its API URL, under make test-containers)."""

    def __init__(self, maildir: Path | str) -> None:
        self._maildir = maildir
        self._before = stored_ids(maildir)
        self._read: dict[str, tuple[list[str], str, EmailMessage]] = {}  # message id -> (recipients, subject, it)

    def _refresh(self) -> None:
        for key, message in read_new(self._maildir, self._before | self._read.keys()).items():
            self._read[key] = (envelope_recipients(message), str(message["Subject"]), message)

    def count(self) -> int:
        self._refresh()
        return len(self._read)

    def each_got(self, addresses: Iterable[str], *subjects: str) -> bool:
        """Whether every address got at least one mail of each subject since the watch began."""
        got = self.subjects(addresses)
        return all(got[address][subject] for address in got for subject in subjects)

    def subjects(self, addresses: Iterable[str]) -> dict[str, Counter]:
        """Per address, how many mails of each subject it got since the watch began."""
        self._refresh()
        wanted = set(addresses)
        got: dict[str, Counter] = {address: Counter() for address in wanted}
        for recipients, subject, _ in self._read.values():
            for to in recipients:
                if to in wanted:
                    got[to][subject] += 1
        return got

    def received(self, address: str, subject: str | None = None) -> list[EmailMessage]:
        """The mails to `address` (of `subject`, when given) since the watch began, oldest first."""
        self._refresh()
        mails = [message for recipients, got, message in self._read.values()
                 if address in recipients and subject in (None, got)]
        return sorted(mails, key=lambda message: str(message.get(RECEIVED_AT, "")))

    async def arrived(self, address: str, subject: str, count: int = 1) -> list[EmailMessage]:
        """The mails of `subject` to `address` since the watch began, once `count` have come."""
        return await eventually(lambda: self.received(address, subject), 60, f"{count} {subject!r} to {address}",
                                done=lambda mails: len(mails) >= count)


async def notifier_knows(stack, principal_ids: Iterable[str]) -> None:
    """Waits until the notifier has every one of these users as a recipient (identity and mfa events
    come on different topics: a mail queued before its recipient is known is retried, one attempt more)."""
    wanted = list(principal_ids)

    async def known() -> bool:
        async with schema(stack, "notifier") as conn:
            count = await conn.fetchval("SELECT count(*) FROM recipients WHERE principal_id = ANY($1::uuid[])", wanted)
        return count == len(wanted)

    await eventually(known, 60, "the notifier knows every recipient")


async def notifications(stack, principal_ids: Iterable[str], kind: str) -> dict[str, asyncpg.Record]:
    """The notifier's queue rows of `kind` for these principals, by principal id."""
    async with schema(stack, "notifier") as conn:
        rows = await conn.fetch(
            "SELECT * FROM notifications WHERE principal_id = ANY($1::uuid[]) AND kind = $2",
            list(principal_ids), kind,
        )
    return {str(row["principal_id"]): row for row in rows}


def senders(stack) -> int:
    """How many mails the notifier sends at once: at most that many are in flight when it fails."""
    configured = stack.service_env("notifier").get("MAIL_SENDERS")
    return int(configured or NotifierSettings.model_fields["mail_senders"].default)


async def counter_total(url: str, sample: str, **labels: str) -> float:
    """The sum of a Prometheus sample over the series whose labels include `labels`, from a /metrics page."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url + "/metrics")).raise_for_status().text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


class DeadLetterTap:
    """Reads a consumer group's dead-letter topic from the offset it had when the tap was opened."""

    def __init__(self, client: dict[str, Any], group: str) -> None:
        self._client = client  # aiokafka's options: stack.kafka_client_options()
        self._partition = TopicPartition(dead_letter_topic(group).name, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._start = 0

    async def __aenter__(self) -> DeadLetterTap:
        self._consumer = AIOKafkaConsumer(**self._client, enable_auto_commit=False, auto_offset_reset="earliest")
        await self._consumer.start()
        self._consumer.assign([self._partition])
        self._start = (await self._consumer.end_offsets([self._partition]))[self._partition]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def records_since(self, settle: float = 2.0) -> list[bytes]:
        """Every record published since the tap opened, reading until none came for `settle` seconds."""
        assert self._consumer is not None
        self._consumer.seek(self._partition, self._start)
        values: list[bytes] = []
        while batch := await self._consumer.getmany(self._partition, timeout_ms=int(settle * 1000)):
            values += [record.value for record in batch.get(self._partition, [])]
        return values


def json_records(values: Iterable[bytes]) -> list[dict]:
    """The JSON objects among `values` (a group's dead-letter topic also holds parked raw events)."""
    found = []
    for value in values:
        with contextlib.suppress(ValueError, TypeError):
            record = json.loads(value)
            if isinstance(record, dict):
                found.append(record)
    return found


async def scheduler_events(stack, enrollment_ids: Iterable[str]) -> dict[str, list[tuple[str, datetime, datetime]]]:
    """Per enrollment, the scheduler's events in position order: (type, deadline, due_at)."""
    of_timer = {timer_aggregate_id(e): e for e in enrollment_ids}
    async with schema(stack, "scheduler") as conn:
        rows = await conn.fetch(
            "SELECT aggregate_id, type, payload->>'deadline' AS deadline, payload->>'due_at' AS due_at "
            "FROM events WHERE aggregate_id = ANY($1::text[]) ORDER BY position",
            list(of_timer),
        )
    fired: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for row in rows:
        fired[of_timer[row["aggregate_id"]]].append((row["type"], datetime.fromisoformat(row["deadline"]),
                                                     datetime.fromisoformat(row["due_at"])))
    return fired


async def timers(stack, enrollment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per enrollment, its pending deadline timers: timer name -> due_at."""
    async with schema(stack, "scheduler") as conn:
        rows = await conn.fetch("SELECT enrollment_id, timer, due_at FROM deadline_timers "
                                "WHERE enrollment_id = ANY($1::text[])", list(enrollment_ids))
    pending: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        pending[row["enrollment_id"]][row["timer"]] = row["due_at"]
    return pending


def enrollment(user_id: str) -> str:
    return f"user_portal:{user_id}"


async def checked_failures(stack, user_id: str) -> int:
    """How many of the user's codes were checked and found wrong (TOTPVerificationFailed events)."""
    async with schema(stack, "mfa") as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1 AND type = $2",
                                   enrollment(user_id), "TOTPVerificationFailed")


RETRY_BUDGET_SECONDS = 120.0  # how long a refused command is sent again before the load gives up on it


class SteadyLoad:
    """Admins' commands and users' sign-ins through the gateway, at a steady pace in the background.

    Each worker repeats: create a user, require MFA, sign in, extend the period, reset MFA, sign in.
    Every command carries an Idempotency-Key; one refused with 503 is sent again with the same key
    after its Retry-After, as a client should, so it is applied once whatever happened to the first
    try. Any other failure (a 500, a 503 that is not problem+json or has no Retry-After, a dropped
    connection) is recorded in `unexpected`.
    """

    def __init__(self, admin: httpx.AsyncClient, portal: httpx.AsyncClient, workers: int = 3,
                 pause: float = 0.05) -> None:
        self._admin, self._portal, self._workers, self._pause = admin, portal, workers, pause
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.accepted: list[dict] = []  # the receipts of the accepted commands
        self.refused: Counter = Counter()  # 503 answers, by request
        self.sign_ins: Counter = Counter()  # sign-in outcomes
        self.unexpected: list[str] = []

    async def __aenter__(self) -> SteadyLoad:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def served(self, commands: int, timeout: float = 120) -> None:
        """Waits until `commands` more commands have been accepted."""
        target = len(self.accepted) + commands
        await eventually(lambda: len(self.accepted) >= target or self.unexpected, timeout,
                         f"{commands} more commands accepted", 0.1)

    def summary(self) -> str:
        retried = sum(1 for receipt in self.accepted if receipt["duplicate"])
        return (f"{self._workers} workers: {len(self.accepted)} commands accepted "
                f"({retried} of them applied by a try that was refused, found by their Idempotency-Key), "
                f"{sum(self.sign_ins.values())} sign-ins answered {dict(self.sign_ins)}, "
                f"refused with 503 {dict(self.refused) or 'none'}, unexpected {len(self.unexpected)}")

    async def _work(self) -> None:
        while not self._stopping.is_set():
            email = f"load-{uuid.uuid4().hex[:10]}@example.com"
            created = await self._command("create user", "/v1/users",
                                          {"email": email, "name": "Load User", "password": PASSWORD})
            if created is None:
                continue
            mfa = f"/v1/users/{created['aggregate_id']}/mfa"
            steps = [("require", {"enrollment_days": 7}), ("sign-in", None), ("extend", {"enrollment_days": 10}),
                     ("reset", {"enrollment_days": 5}), ("sign-in", None)]
            for step, body in steps:
                await asyncio.sleep(self._pause)
                if step == "sign-in":
                    await self._sign_in(email)
                elif await self._command(step, f"{mfa}/{step}", body) is None:
                    break

    async def _command(self, what: str, path: str, body: dict) -> dict | None:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        deadline = time.monotonic() + RETRY_BUDGET_SECONDS
        while True:
            response = await self._send(what, self._admin, path, body, headers)
            if response is None or not self._answered_cleanly(what, response):
                return None
            if response.status_code < 300:
                self.accepted.append(response.json())
                return response.json()
            if time.monotonic() > deadline:
                self.unexpected.append(f"{what}: still refused after {RETRY_BUDGET_SECONDS:.0f}s")
                return None
            await asyncio.sleep(float(response.headers["Retry-After"]))

    async def _sign_in(self, email: str) -> None:
        response = await self._send("sign-in", self._portal, "/v1/portal/sign-in",
                                    {"email": email, "password": PASSWORD}, {})
        if response is not None and self._answered_cleanly("sign-in", response) and response.status_code < 300:
            self.sign_ins[response.json()["outcome"]] += 1

    async def _send(self, what: str, http: httpx.AsyncClient, path: str, body: dict,
                    headers: dict) -> httpx.Response | None:
        try:
            return await http.post(path, json=body, headers=headers)
        except httpx.TransportError as error:
            self.unexpected.append(f"{what}: {error!r}")
            return None

    def _answered_cleanly(self, what: str, response: httpx.Response) -> bool:
        """Whether the answer is a success or a clean refusal (503 problem+json with Retry-After)."""
        if response.status_code < 300:
            return True
        clean = (response.status_code == 503 and "Retry-After" in response.headers
                 and response.headers["content-type"].startswith("application/problem+json"))
        if clean:
            self.refused[what] += 1
        else:
            self.unexpected.append(f"{what}: {response.status_code} {response.text[:300]}")
        return clean
