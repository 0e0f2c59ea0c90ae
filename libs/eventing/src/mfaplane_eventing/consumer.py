"""The one way services consume events: idempotent handlers, bounded retries, a dead-letter topic.

faust-streaming stays behind this module; services only see `Consumer` and write handlers of the
form `async def handle(conn, envelope)`. Each event is handled in a database transaction that also
records its event id, so redelivery (at-least-once delivery, a republish, a rebalance) finds the id
and skips. A handler that keeps failing after bounded retries with backoff parks the message on
the service's dead-letter topic (and in `dead_letters`) and the partition moves on. A message that
cannot even be decoded is parked at once: retrying cannot fix it, and so is an event that its
topic's owner did not sign (event_signing.py): it is counted in mfaplane_events_rejected_total,
and never reaches a handler. Only the events a service acts on are checked: one it skips changes
nothing, so its signature need not cost a verification.

Messages that arrive together (up to BATCH_MAX_MESSAGES, collected for at most BATCH_WAIT_SECONDS)
are handled in one transaction, with their ids recorded by one statement: one commit for many
events. A service may give a batch handler instead, which takes the batch's new events at once
(the gateway's projector: one upsert per row for all of them). If anything in
such a batch fails, it is rolled back whole and each of its messages goes through the
single-message path above, with its own retries and dead letter.

An event of a schema version, or a type, newer than this service knows is not poison when its
topic's owner signed it: a producer was upgraded before its consumers, and this service's next
version will read it. The consumer holds it
(`held_events`) with every later message of its partition, so that the partition's order is kept,
and goes on with its other partitions; every replica retries the oldest held message of each
partition (HELD_RETRY_SECONDS) until one that knows the version hands them to its handler. Holding
goes through the database, not through the Kafka offsets: faust acknowledges a batch's messages
whatever becomes of them, so an offset cannot be made to wait. mfaplane_events_held counts them;
docs/operations.md gives the rolling-upgrade order that avoids holding at all, and
`park-held` (park_oldest_held) the way out when no release will ever read a held message.

Handlers must be quick database work; anything slow (SMTP) is queued in a table by the handler and
done by a separate loop, so the poll loop never waits on it.

A service consumes in its own Kafka group, mfaplane-<service>, and may consume the same topics in
groups beside it, mfaplane-<service>-<name> (the gateway's audit log: `MORE_CONSUMER_GROUPS`): each
group has its offsets, and its rows in the consumer tables under `consumer_group` (<name>, '' for the
service's own), so it handles every event once, holds and parks on its own, and progresses apart.
Such a group took over work that the service's own group did before it existed: the first time it
starts it commits that group's offsets as its own (group_lag.take_over), rather than reading the
topics from their beginning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import faust
from pydantic import ValidationError

from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_contracts.registry import NewerSchemaVersion, UnknownEventType, UnknownSchemaVersion
from mfaplane_contracts.topics import Topic, consumer_group_id, dead_letter_topic
from mfaplane_eventing import db, event_signing, group_lag, logs, loops
from mfaplane_eventing.kafka_security import KafkaSecurity
from mfaplane_eventing.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    EVENTS_HELD,
    EVENTS_REJECTED,
    HANDLER_ERRORS,
)
from mfaplane_eventing.service_keys import TrustedKeys, UntrustedSignature

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]
# Handles a run of events in order, in one transaction: what a handler does, with fewer statements.
BatchHandler = Callable[[asyncpg.Connection, Sequence[Envelope]], Awaitable[None]]
MAX_MESSAGE_BYTES = 1_000_000
# An envelope holds a few dozen arrays and objects. Far more is refused before parsing: nested deep
# enough, they make the JSON parser raise RecursionError, which on CPython 3.11 can leave the
# interpreter's recursion count off for the rest of the process.
MAX_CONTAINERS = 500
DATABASE_RETRY_SECONDS = 1.0
HELD_RETRY_SECONDS = 10.0
HELD_PAGE = 100  # held messages released per partition and round
# Every statement on the consumer tables names the consumer group ($1) whose rows it reads or writes.
# Holds a message, unless its event was handled already (a redelivery) or is held already (sent again).
HOLD = ('INSERT INTO held_events (consumer_group, topic, partition, "offset", value, reason, event_id) '
        "SELECT $1, $2, $3, $4, $5, $6, $7 "
        "WHERE NOT EXISTS (SELECT FROM processed_events WHERE consumer_group = $1 AND event_id = $7) "
        "ON CONFLICT DO NOTHING")
_TAKE_OVER_HELD = ('INSERT INTO held_events (consumer_group, topic, partition, "offset", value, reason, event_id) '
                   "SELECT $1, topic, partition, \"offset\", value, reason, event_id FROM held_events "
                   "WHERE consumer_group = '' ON CONFLICT DO NOTHING")
UNHOLD = 'DELETE FROM held_events WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND "offset" = $4'
PARK = ('INSERT INTO dead_letters (consumer_group, topic, partition, "offset", event_id, error, value) '
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
# The first handlings of a batch's events (or one event's), in the statement that records them, unless
# one of their partitions holds messages: then none (held is true), and they wait behind those.
FIRST_HANDLINGS = (
    "WITH held AS (SELECT EXISTS (SELECT FROM held_events WHERE consumer_group = $1 AND (topic, partition) IN "
    "                             (SELECT * FROM unnest($3::text[], $4::int[]))) AS held), "
    "     first AS (INSERT INTO processed_events (consumer_group, event_id) SELECT DISTINCT $1, unnest($2::uuid[]) "
    "               WHERE NOT (SELECT held FROM held) ON CONFLICT DO NOTHING RETURNING event_id) "
    "SELECT (SELECT held FROM held) AS held, ARRAY(SELECT event_id FROM first) AS first_time"
)
DEAD_LETTER_COPY_BYTES = 64 * 1024  # the full value stays in the dead_letters table
UNDECODABLE = (ValueError, ValidationError, UnknownEventType, UnknownSchemaVersion)
BATCH_MAX_MESSAGES = 200
BATCH_WAIT_SECONDS = 0.02  # the longest a message waits for others to share its transaction
Message = tuple[str, int, int, bytes | None]  # topic, partition, offset, value


class Poison(Exception):
    """A message no retry can fix."""

    rejected_because: str | None = None  # set when the event's signature was refused


class Untrusted(Poison):
    def __init__(self, refusal: UntrustedSignature) -> None:
        super().__init__(f"untrusted ({refusal.reason}): {refusal}")
        self.rejected_because = refusal.reason


class PartitionHeld(Exception):
    """A batch with a message of a partition that holds messages: each is then handled on its own."""


class NewerThanKnown(Exception):
    """A trusted event of a type or schema version this service's code does not know yet."""

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(f"{envelope.type} v{envelope.schema_version}")
        self.envelope = envelope


def parse(value: bytes | None) -> dict[str, Any]:
    """The message as a JSON object, not yet trusted nor validated."""
    if value is None or len(value) > MAX_MESSAGE_BYTES:
        raise Poison("empty or oversized message")
    if value.count(b"[") + value.count(b"{") > MAX_CONTAINERS:
        raise Poison("undecodable: more arrays and objects than an event holds")
    try:
        document = json.loads(value)
    except ValueError as error:
        raise Poison(f"undecodable: {type(error).__name__}") from None
    if not isinstance(document, dict):
        raise Poison("undecodable: not a JSON object")
    return document


def decode(document: dict[str, Any], topic: str, keys: TrustedKeys) -> Envelope:
    """The envelope, once its topic's owner is proven to have signed it and it is valid."""
    try:
        event_signing.check(document, topic, keys)
    except UntrustedSignature as refusal:
        raise Untrusted(refusal) from None
    except Exception as error:  # noqa: BLE001 - whatever an unchecked message makes fail, it is not trusted
        raise Untrusted(UntrustedSignature("bad_signature", f"cannot be checked ({type(error).__name__})")) from None
    try:
        envelope = Envelope.model_validate(document)
        envelope.body()
    except (NewerSchemaVersion, UnknownEventType):  # its owner signed it: a newer release of the owner
        raise NewerThanKnown(envelope) from None
    except UNDECODABLE as error:
        raise Poison(f"undecodable: {error}") from error
    return envelope


class Consumer:
    def __init__(
        self,
        service: str,
        kafka: KafkaSecurity,
        keys: TrustedKeys,
        pool: asyncpg.Pool,
        topics: tuple[Topic, ...],
        handler: Handler | None,
        max_retries: int = 5,
        retry_base_seconds: float = 0.2,
        handles: tuple[type[EventPayload], ...] | None = None,
        batch_handler: BatchHandler | None = None,
        consumer_group: str = "",
    ) -> None:
        """`handler`, `batch_handler` or both: with only a batch handler, a message handled on its own
        is a batch of one. `consumer_group` names a group beside the service's own (module docstring)."""
        if handler is None and batch_handler is None:
            raise ValueError("a consumer needs a handler or a batch handler")
        self._pool = pool
        # batch_handler is set whenever handler is not (checked above)
        self._handler = handler or (lambda conn, envelope: batch_handler(conn, [envelope]))  # type: ignore[misc]
        self._batch_handler = batch_handler
        # The event types the handler does something with (None: all); the others cost no transaction.
        self._handles = None if handles is None else frozenset(t.event_type for t in handles)
        self._max_retries = max_retries
        self._retry_base = retry_base_seconds
        self._kafka, self._keys, self._topics = kafka, keys, topics
        self._group, self._group_id = consumer_group, consumer_group_id(service, consumer_group)
        self._own_group_id = consumer_group_id(service)  # the service's own, which a group beside takes over
        self._loops: list[asyncio.Task[None]] = []
        self._app = faust.App(
            self._group_id,
            broker=kafka.faust_broker(),
            broker_credentials=kafka.faust_credentials(),
            store="memory://",
            # Faust makes a table directory even for in-memory tables: not in the working directory.
            datadir=os.path.join(tempfile.gettempdir(), f"{self._group_id}-faust"),
            web_enabled=False,
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_rebalance_timeout=6.0,
            broker_commit_interval=1.0,
        )
        self._source = self._app.topic(*(t.name for t in topics), value_serializer="raw", key_serializer="raw")
        self._dead_letters = self._app.topic(dead_letter_topic(service).name, value_serializer="raw",
                                             key_serializer="raw")
        self._app.agent(self._source, name=f"{self._group_id}-events")(self._consume)

    async def start(self) -> None:
        if self._group:
            await self.take_over()
        await self._app.start()
        self._loops = [asyncio.create_task(loops.repeat(what, step, seconds)) for what, step, seconds in (
            ("measuring consumer lag", self.measure_lag, group_lag.LAG_REFRESH_SECONDS),
            ("releasing held events", self.release_held, HELD_RETRY_SECONDS),
        )]

    async def stop(self) -> None:
        """Finishes the messages in hand, commits offsets and leaves the group."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._app.stop()

    async def take_over(self) -> None:
        """The first time this group starts, it starts where the service's own group is. Replicas starting
        together wait for the first one's row in consumer_groups, so it copies the offsets before any
        of them consumes (each replica starts the service's own group after this)."""
        async with self._pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval("INSERT INTO consumer_groups (consumer_group) VALUES ($1) "
                                        "ON CONFLICT DO NOTHING RETURNING true", self._group)
            if first and await group_lag.take_over(self._kafka, self._group_id, self._own_group_id, self._topics):
                # What the own group holds is behind the offsets just copied: this group holds it too.
                await conn.execute(_TAKE_OVER_HELD, self._group)
                log.info("consumer group starts where the service's own group is",
                         extra={"group": self._group_id, "from": self._own_group_id})

    async def measure_lag(self) -> bool:
        """Sets mfaplane_consumer_lag for every partition of the consumed topics (see group_lag)."""
        for tp, behind in (await group_lag.lag(self._kafka, self._group_id, self._topics)).items():
            CONSUMER_LAG.labels(self._group_id, tp.topic, tp.partition).set(behind)
        return False  # the loop then waits LAG_REFRESH_SECONDS

    async def _consume(self, stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX_MESSAGES, within=BATCH_WAIT_SECONDS):
            messages = [event.message for event in events]
            await self.process_batch([(m.topic, m.partition, m.offset, m.value) for m in messages])

    async def process_batch(self, messages: Sequence[Message]) -> None:
        """Handles the messages in one transaction or, if that fails, one by one with `process`."""
        if len(messages) > 1:
            try:
                outcomes = await self._handle_together(messages)
            except Exception as error:  # noqa: BLE001 - each message is then handled (or parked) on its own
                log.info("batch rolled back; handling its messages one by one",
                         extra={"messages": len(messages), "error": repr(error)})
            else:
                for topic, outcome in outcomes:
                    EVENTS_CONSUMED.labels(self._group_id, topic, outcome).inc()
                return
        for message in messages:
            await self.process(*message)

    async def _handle_together(self, messages: Sequence[Message]) -> list[tuple[str, str]]:
        outcomes: list[tuple[str, str]] = []
        wanted: list[tuple[str, Envelope]] = []
        for topic, _, _, value in messages:
            document = parse(value)  # Poison: the one-by-one path parks it
            if self._acts_on(document):
                wanted.append((topic, decode(document, topic, self._keys)))
            else:
                outcomes.append((topic, "ignored"))
        if not wanted:
            return outcomes
        async with self._pool.acquire() as conn, conn.transaction():
            held, first = await conn.fetchrow(FIRST_HANDLINGS, self._group, [e.event_id for _, e in wanted],
                                              [m[0] for m in messages], [m[1] for m in messages])
            if held:
                raise PartitionHeld()
            first_time = set(first)
            fresh: list[tuple[str, Envelope]] = []
            for topic, envelope in wanted:
                if envelope.event_id not in first_time:
                    outcomes.append((topic, "duplicate"))
                    continue
                first_time.discard(envelope.event_id)  # the same event twice in a batch is handled once
                fresh.append((topic, envelope))
            if self._batch_handler is not None and fresh:
                await self._batch_handler(conn, [envelope for _, envelope in fresh])
            else:
                for _, envelope in fresh:
                    token = logs.correlation_id.set(str(envelope.correlation_id))
                    try:
                        await self._handler(conn, envelope)
                    finally:
                        logs.correlation_id.reset(token)
            outcomes += [(topic, "handled") for topic, _ in fresh]
        return outcomes

    def _acts_on(self, document: dict[str, Any]) -> bool:
        """From the unchecked type: skipping changes nothing, and a type that is not a string is not skipped."""
        kind = document.get("type")
        return self._handles is None or not isinstance(kind, str) or kind in self._handles

    async def process(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        try:
            document = parse(value)
            if not self._acts_on(document):
                EVENTS_CONSUMED.labels(self._group_id, topic, "ignored").inc()
                return
            envelope = decode(document, topic, self._keys)
        except Poison as poison:
            await self._park((topic, partition, offset, value), None, str(poison), poison.rejected_because)
            return
        except NewerThanKnown as newer:
            log.error("event newer than this service: held until an upgraded consumer handles it",
                      extra={"topic": topic, "partition": partition, "offset": offset, "event": str(newer),
                             "event_id": str(newer.envelope.event_id)})
            await self._pool.execute(HOLD, self._group, topic, partition, offset, value, f"newer: {newer}",
                                     newer.envelope.event_id)
            EVENTS_CONSUMED.labels(self._group_id, topic, "held").inc()
            return
        await self._handle((topic, partition, offset, value), envelope)

    async def _handle(self, message: Message, envelope: Envelope, releasing: bool = False) -> None:
        token = logs.correlation_id.set(str(envelope.correlation_id))
        try:
            await self._handle_with_retries(message, envelope, releasing)
        finally:
            logs.correlation_id.reset(token)

    async def release_held(self) -> bool:
        """Hands the held messages this code can read to the handler, oldest first in each partition;
        True if it released any."""
        rows = await self._pool.fetch("SELECT topic, partition, count(*) AS held FROM held_events "
                                      "WHERE consumer_group = $1 GROUP BY 1, 2", self._group)
        for topic in self._topics:
            EVENTS_HELD.labels(self._group_id, topic.name).set(
                sum(row["held"] for row in rows if row["topic"] == topic.name))
        released = False
        for row in rows:
            released |= await self._release(row["topic"], row["partition"])
        return released

    async def _release(self, topic: str, partition: int) -> bool:
        lock_name = f"held_events:{self._group_id}:{topic}:{partition}"
        async with self._pool.acquire() as lock:
            # one replica at a time releases a partition, or its order would be lost
            if not await lock.try_session_lock(lock_name):
                return False
            try:
                return await self._release_in_order(lock, topic, partition)
            finally:
                await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_name)

    async def _release_in_order(self, conn: asyncpg.Connection, topic: str, partition: int) -> bool:
        released = False
        for row in await conn.fetch('SELECT "offset", value FROM held_events WHERE consumer_group = $1 AND topic = $2 '
                                    'AND partition = $3 ORDER BY "offset" LIMIT $4', self._group, topic, partition,
                                    HELD_PAGE):
            message = (topic, partition, row["offset"], row["value"])
            try:
                envelope = decode(parse(row["value"]), topic, self._keys)
            except NewerThanKnown:
                return released  # still too new for this code: it waits, and so does the rest
            except Poison as poison:
                await self._park(message, None, str(poison), poison.rejected_because, releasing=True)
            else:
                await self._handle(message, envelope, releasing=True)
            released = True
        return released

    async def _handle_with_retries(self, message: Message, envelope: Envelope, releasing: bool) -> None:
        topic = message[0]
        attempt = 0
        while True:
            try:
                outcome = await self._handle_once(message, envelope, releasing)
            except db.DATABASE_AWAY as error:
                # Not the event's fault, and parking it needs the database too: the event waits for it.
                log.warning("database unreachable, the event waits", extra={"event_id": str(envelope.event_id),
                                                                            "error": repr(error)})
                await asyncio.sleep(DATABASE_RETRY_SECONDS)
            except Exception as error:  # noqa: BLE001 - any handler failure is retried, then parked
                attempt += 1
                HANDLER_ERRORS.labels(topic).inc()
                log.warning("handler failed", extra={"event_id": str(envelope.event_id), "type": envelope.type,
                                                     "attempt": attempt, "error": repr(error)})
                if attempt == self._max_retries:
                    await self._park(message, envelope, repr(error), releasing=releasing)
                    return
                await asyncio.sleep(self._retry_base * 2 ** (attempt - 1) * (0.5 + random.random()))
            else:
                EVENTS_CONSUMED.labels(self._group_id, topic, outcome).inc()
                return

    async def _handle_once(self, message: Message, envelope: Envelope, releasing: bool) -> str:
        topic, partition, offset, value = message
        async with self._pool.acquire() as conn, conn.transaction():
            if releasing:
                await conn.execute(UNHOLD, self._group, topic, partition, offset)
                first_time = await conn.fetchval(
                    "INSERT INTO processed_events (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING "
                    "RETURNING true", self._group, envelope.event_id)
            else:
                held, first = await conn.fetchrow(FIRST_HANDLINGS, self._group, [envelope.event_id], [topic],
                                                  [partition])
                first_time = bool(first)
                if held:
                    await conn.execute(HOLD, self._group, topic, partition, offset, value, "behind a held message",
                                       envelope.event_id)
                    return "held"
            if not first_time:
                return "duplicate"
            await self._handler(conn, envelope)
            return "handled"

    async def _park(self, message: Message, envelope: Envelope | None, error: str,
                    rejected_because: str | None = None, releasing: bool = False) -> None:
        topic, partition, offset, value = message
        log.error("message dead-lettered", extra={"group": self._group_id, "topic": topic, "partition": partition,
                                                   "offset": offset, "error": error[:500]})
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(PARK, self._group, topic, partition, offset, envelope.event_id if envelope else None,
                               error[:2000], value)
            if releasing:
                await conn.execute(UNHOLD, self._group, topic, partition, offset)
        copy = (value or b"")[:DEAD_LETTER_COPY_BYTES]
        headers = {"error": error[:500].encode(), "consumer-group": self._group_id.encode(),
                   "source-topic": topic.encode(), "source-partition": str(partition).encode(),
                   "source-offset": str(offset).encode(),
                   "truncated": str(len(copy) < len(value or b"")).lower().encode()}
        try:
            await self._dead_letters.send(value=copy, headers=headers)
        except Exception as failure:  # noqa: BLE001 - the dead_letters row is the durable record
            log.error("could not publish dead letter", extra={"error": repr(failure)})
        DEAD_LETTERS.labels(topic).inc()
        if rejected_because is not None:
            EVENTS_REJECTED.labels(topic, rejected_because).inc()
        EVENTS_CONSUMED.labels(self._group_id, topic, "dead_lettered").inc()


async def park_oldest_held(pool: asyncpg.Pool, topic: str, partition: int,
                           consumer_group: str = "") -> asyncpg.Record | None:
    """Moves a consumer group's oldest held message of a partition to `dead_letters` (an operator's
    decision, when no release will ever read it: a writer rolled back, a version nobody ships); the
    ones behind it are then released in turn. The message it parked, or None if the group holds none."""
    async with pool.acquire() as conn, conn.transaction():
        held = await conn.fetchrow(
            'DELETE FROM held_events WHERE (consumer_group, topic, partition, "offset") = (SELECT consumer_group, '
            'topic, partition, "offset" FROM held_events WHERE consumer_group = $1 AND topic = $2 AND partition = $3 '
            'ORDER BY "offset" LIMIT 1 FOR UPDATE) RETURNING "offset", event_id, value, reason',
            consumer_group, topic, partition)
        if held is not None:
            await conn.execute(PARK, consumer_group, topic, partition, held["offset"], held["event_id"],
                               f"parked by an operator while held ({held['reason']})", held["value"])
    return held
