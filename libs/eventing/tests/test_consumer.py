"""The consumer helper: idempotent handling, bounded retries, dead letters, and the faust agent."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from mfaplane_contracts.identity_events import UserCreated
from mfaplane_contracts.registry import EVENT_TYPES, UPCASTERS
from mfaplane_contracts.topics import IDENTITY_EVENTS, consumer_group_id, dead_letter_topic
from mfaplane_eventing import consumer as consumer_module
from mfaplane_eventing import event_signing
from mfaplane_eventing.consumer import Consumer, park_oldest_held
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys

GROUP = "gateway"  # any group with a dead-letter topic in the catalog
IDENTITY_KEY, NOTIFIER_KEY = ServiceKey.generate(), ServiceKey.generate()  # the owner of the topic, and another
KEYS = TrustedKeys.from_json(json.dumps({"identity": [IDENTITY_KEY.public_base64()],
                                         "notifier": [NOTIFIER_KEY.public_base64()]}))


def _created(user: uuid.UUID) -> dict:
    return {"user_id": str(user), "email": "c@example.com", "name": "C"}


def _message(user: uuid.UUID | None = None, kind: str = "UserCreated", payload=_created,
             key: ServiceKey | None = IDENTITY_KEY, version: int = 1) -> tuple[uuid.UUID, bytes]:
    """An event as the relay of `key`'s service publishes it (None: unsigned), at schema `version`."""
    user = user or uuid.uuid4()
    event_id = uuid.uuid4()
    envelope = {
        "event_id": str(event_id), "type": kind, "schema_version": version, "aggregate_type": "user",
        "aggregate_id": str(user), "aggregate_version": 1, "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()), "causation_id": None, "command_id": None, "actor": "admin:test",
        "payload": payload(user),
    }
    value = json.dumps(envelope).encode()
    return event_id, value if key is None else event_signing.sign_batch([value], key)[0]


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[uuid.UUID] = []
        self.failures = failures

    async def __call__(self, conn, envelope) -> None:
        self.calls.append(envelope.event_id)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("handler failed")
        await conn.execute("CREATE TABLE IF NOT EXISTS consumer_test_rows (event_id uuid PRIMARY KEY)")
        await conn.execute("INSERT INTO consumer_test_rows VALUES ($1)", envelope.event_id)


@pytest.fixture
async def consumers(kafka, pool):
    """Makes consumers of the test group and stops them (and their producers) afterwards."""
    made: list[Consumer] = []

    def make(handler, retries: int = 3, handles=None, consumer_group: str = "") -> Consumer:
        made.append(Consumer(GROUP, kafka, KEYS, pool, (IDENTITY_EVENTS,), handler, max_retries=retries,
                             retry_base_seconds=0.01, handles=handles, consumer_group=consumer_group))
        return made[-1]

    yield make
    for consumer in made:
        await consumer.stop()


async def test_a_redelivered_event_is_handled_once(consumers, pool) -> None:
    handler = Recorder()
    consumer = consumers(handler)
    event_id, value = _message()
    for offset in (1, 2):
        await consumer.process(IDENTITY_EVENTS.name, 0, offset, value)
    assert handler.calls == [event_id]
    assert await pool.fetchval("SELECT count(*) FROM consumer_test_rows WHERE event_id = $1", event_id) == 1


async def test_a_failing_handler_is_retried_and_its_writes_roll_back(consumers, pool) -> None:
    handler = Recorder(failures=2)
    event_id, value = _message()
    await consumers(handler).process(IDENTITY_EVENTS.name, 0, 10, value)
    assert handler.calls == [event_id] * 3
    assert await pool.fetchval("SELECT count(*) FROM consumer_test_rows WHERE event_id = $1", event_id) == 1


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "as a batch"])
async def test_event_types_the_handler_does_not_handle_are_passed_over_without_a_trace(consumers, pool,
                                                                                       together) -> None:
    handler = Recorder()
    consumer = consumers(handler, handles=(UserCreated,))
    other_id, other = _message(kind="UserDeleted", payload=lambda user: {"user_id": str(user)})
    created_id, created = _message()
    messages = [(IDENTITY_EVENTS.name, 0, 1, other), (IDENTITY_EVENTS.name, 0, 2, created)]
    if together:
        await consumer.process_batch(messages)
    else:
        for message in messages:
            await consumer.process(*message)
    assert handler.calls == [created_id]
    recorded = await pool.fetch("SELECT event_id FROM processed_events WHERE event_id = ANY($1)",
                                [other_id, created_id])
    assert [r["event_id"] for r in recorded] == [created_id]


@pytest.mark.parametrize("value", [b"{not json", b'{"type": "NoSuchEvent"}', None, b"x" * 1_000_001])
async def test_poison_messages_are_dead_lettered_without_calling_the_handler(consumers, pool, value) -> None:
    handler = Recorder()
    offset = uuid.uuid4().int % 10**9
    await consumers(handler).process(IDENTITY_EVENTS.name, 3, offset, value)
    assert handler.calls == []
    assert await pool.fetchval('SELECT count(*) FROM dead_letters WHERE "offset" = $1', offset) == 1


def _tampered(value: bytes) -> bytes:
    """The owner's signed event with its payload changed afterwards."""
    document = json.loads(value)
    document["payload"]["email"] = "attacker@example.com"
    return json.dumps(document).encode()


def _unknown_signer(value: bytes) -> bytes:
    return event_signing.sign_batch([value], ServiceKey.generate())[0]


def _mfa_event_as_identity(_: bytes) -> bytes:
    """identity's own key, but an event type that only mfa publishes (on another topic)."""
    return _message(kind="MFARequirementRemoved", payload=lambda user: {"principal_id": str(user)})[1]


@pytest.mark.parametrize(("forge", "reason"), [
    (lambda value: _message(key=None)[1], "unsigned"),
    (_tampered, "bad_signature"),
    (_unknown_signer, "unknown_key"),
    (lambda value: _message(key=NOTIFIER_KEY)[1], "not_topic_owner"),
    (_mfa_event_as_identity, "foreign_type"),
    # a forged event of a version no consumer knows: refused, not waited for
    (lambda value: _message(key=None, version=99)[1], "unsigned"),
    (lambda value: _unknown_signer(_message(key=None, version=99)[1]), "unknown_key"),
])
@pytest.mark.parametrize("together", [False, True], ids=["one by one", "as a batch"])
async def test_an_event_its_topic_owner_did_not_sign_is_refused_and_dead_lettered(consumers, pool, forge, reason,
                                                                                   together) -> None:
    handler = Recorder()
    consumer = consumers(handler)
    _, value = _message()
    forged = forge(value)
    offset = uuid.uuid4().int % 10**9
    rejected = REGISTRY.get_sample_value("mfaplane_events_rejected_total",
                                         {"topic": IDENTITY_EVENTS.name, "reason": reason}) or 0
    genuine_id, genuine = _message()
    messages = [(IDENTITY_EVENTS.name, 4, offset, forged), (IDENTITY_EVENTS.name, 4, offset + 1, genuine)]
    if together:
        await consumer.process_batch(messages)
    else:
        for message in messages:
            await consumer.process(*message)

    assert handler.calls == [genuine_id], "the forged event never reaches the handler; the genuine one does"
    parked = await pool.fetchrow('SELECT error, event_id FROM dead_letters WHERE "offset" = $1', offset)
    assert parked["error"].startswith(f"untrusted ({reason})") and parked["event_id"] is None
    assert REGISTRY.get_sample_value("mfaplane_events_rejected_total",
                                     {"topic": IDENTITY_EVENTS.name, "reason": reason}) == rejected + 1


@pytest.mark.parametrize("depth", [600, 100_000])
def test_a_message_nested_deeper_than_an_event_is_refused_before_it_is_parsed(depth: int) -> None:
    """Refused by counting, never parsed: at 100,000 levels json.loads would raise RecursionError."""
    with pytest.raises(consumer_module.Poison, match="more arrays and objects than an event holds"):
        consumer_module.parse(b'{"type": "UserCreated", "payload": ' + b"[" * depth + b"]" * depth + b"}")


def _with(**fields) -> bytes:
    """An unsigned event with `fields` set, as JSON (which escapes a lone surrogate)."""
    document = json.loads(_message(key=None)[1])
    document.update(fields)
    return json.dumps(document).encode()


@pytest.mark.parametrize("value", [
    b"[" * 600 + b"]" * 600,  # more arrays than an event holds: refused before parsing (MAX_CONTAINERS)
    _with(key_id="k", signature="\u00e9" * 88),  # not ASCII, so not base64
    _with(key_id="k", signature="AA==", actor="\ud800"),  # a lone surrogate: no UTF-8 for the signed text
    _with(type=["UserCreated"]),  # a type that is no string
], ids=["nested arrays", "non-ASCII signature", "lone surrogate", "type not a string"])
async def test_an_unsigned_message_that_makes_checking_fail_is_parked_and_the_rest_of_its_batch_handled(
        consumers, pool, value) -> None:
    """Whatever an unchecked message makes fail, it is parked like any poison: it must never stop the
    consumer, which would drop the signed events delivered with it."""
    handler = Recorder()
    consumer = consumers(handler, handles=(UserCreated,))
    offset = uuid.uuid4().int % 10**9
    genuine_id, genuine = _message()
    await consumer.process_batch([(IDENTITY_EVENTS.name, 5, offset, value),
                                  (IDENTITY_EVENTS.name, 5, offset + 1, genuine)])
    assert handler.calls == [genuine_id]
    assert await pool.fetchval('SELECT count(*) FROM dead_letters WHERE "offset" = $1', offset) == 1


async def test_a_handler_that_keeps_failing_parks_the_message_and_the_dead_letter_topic_gets_it(
    consumers, pool, kafka
) -> None:
    handler = Recorder(failures=99)
    event_id, value = _message()
    await consumers(handler, retries=2).process(IDENTITY_EVENTS.name, 1, 77, value)
    assert len(handler.calls) == 2
    row = await pool.fetchrow("SELECT error FROM dead_letters WHERE event_id = $1", event_id)
    assert "handler failed" in row["error"]
    assert await _dead_lettered_ids(kafka) >= {str(event_id)}
    assert not await pool.fetchval("SELECT count(*) FROM processed_events WHERE event_id = $1", event_id)


async def test_the_agent_consumes_from_kafka(consumers, kafka) -> None:
    handler = Recorder()
    consumer = consumers(handler)
    producer = AIOKafkaProducer(**kafka.client_options())
    await producer.start()
    await consumer.start()
    try:
        event_id, value = _message()
        await producer.send_and_wait(IDENTITY_EVENTS.name, value, key=b"k")
        async with asyncio.timeout(60):
            while event_id not in handler.calls:
                await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def _dead_lettered_ids(kafka) -> set[str]:
    topic = dead_letter_topic(GROUP).name
    reader = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await reader.start()
    try:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        batches = await reader.getmany(timeout_ms=2000)
        return {_event_id(m.value) for messages in batches.values() for m in messages}
    finally:
        await reader.stop()


def _event_id(value: bytes) -> str | None:
    try:
        return json.loads(value)["event_id"]
    except (ValueError, KeyError, TypeError):
        return None  # the undecodable messages parked by the poison test


async def _row_transactions(pool, event_ids) -> int:
    """How many transactions wrote the handler's rows of these events."""
    return await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM consumer_test_rows WHERE event_id = ANY($1)",
                               event_ids)


async def test_a_batch_of_messages_is_handled_in_one_transaction_and_a_repeated_event_once(consumers, pool) -> None:
    handler = Recorder()
    consumer = consumers(handler)
    (a_id, a), (b_id, b) = _message(), _message()
    await consumer.process_batch([(IDENTITY_EVENTS.name, 0, 1, a), (IDENTITY_EVENTS.name, 0, 2, b),
                                  (IDENTITY_EVENTS.name, 0, 3, a)])
    await consumer.process_batch([(IDENTITY_EVENTS.name, 0, 1, a), (IDENTITY_EVENTS.name, 0, 2, b)])
    assert handler.calls == [a_id, b_id]
    assert await _row_transactions(pool, [a_id, b_id]) == 1


async def test_a_batch_that_fails_is_rolled_back_and_its_messages_handled_one_by_one(consumers, pool) -> None:
    handler = Recorder()
    consumer = consumers(handler)
    (a_id, a), (b_id, b) = _message(), _message()
    offset = uuid.uuid4().int % 10**9
    await consumer.process_batch([(IDENTITY_EVENTS.name, 0, 1, a), (IDENTITY_EVENTS.name, 4, offset, b"{not json"),
                                  (IDENTITY_EVENTS.name, 0, 2, b)])
    assert handler.calls == [a_id, b_id], "the poison message fails the batch before any handler runs"
    assert await _row_transactions(pool, [a_id, b_id]) == 2
    assert await pool.fetchval('SELECT count(*) FROM dead_letters WHERE "offset" = $1', offset) == 1

    (c_id, c), (d_id, d) = _message(), _message()
    handler.failures = 1
    await consumer.process_batch([(IDENTITY_EVENTS.name, 0, 3, c), (IDENTITY_EVENTS.name, 0, 4, d)])
    assert handler.calls[2:] == [c_id, c_id, d_id], "c failed in the batch, then was handled on its own"
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE event_id = ANY($1)", [c_id, d_id]) == 2


class DatabaseAway(Recorder):
    """A handler whose database connection is cut, `failures` times over."""

    async def __call__(self, conn, envelope) -> None:
        if self.failures:
            self.calls.append(envelope.event_id)
            self.failures -= 1
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        await super().__call__(conn, envelope)


async def test_an_event_waits_for_the_database_however_long_it_is_away(consumers, pool, monkeypatch) -> None:
    monkeypatch.setattr(consumer_module, "DATABASE_RETRY_SECONDS", 0.01)
    handler = DatabaseAway(failures=5)
    event_id, value = _message()
    await consumers(handler, retries=2).process(IDENTITY_EVENTS.name, 0, 30, value)
    assert handler.calls == [event_id] * 6  # more tries than the retries of a failing handler, and no parking
    assert await pool.fetchval("SELECT count(*) FROM consumer_test_rows WHERE event_id = $1", event_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE event_id = $1", event_id) == 0


async def test_the_lag_gauge_counts_what_the_group_has_not_committed_even_when_nothing_arrives(kafka, pool) -> None:
    """No consumer of the group runs: a stuck consumer, which receives nothing, must still show lag."""
    group = f"lag-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(**kafka.client_options())
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(IDENTITY_EVENTS.name, _message()[1], partition=0)
    finally:
        await producer.stop()
    partition = TopicPartition(IDENTITY_EVENTS.name, 0)
    committer = AIOKafkaConsumer(**kafka.client_options(), group_id=f"mfaplane-{group}",
                                 enable_auto_commit=False)
    await committer.start()
    try:
        end = (await committer.end_offsets([partition]))[partition]
        committer.assign([partition])
        await committer.commit({partition: end - 2})  # the group has taken all but the last two
    finally:
        await committer.stop()

    await Consumer(group, kafka, KEYS, pool, (IDENTITY_EVENTS,), Recorder()).measure_lag()

    def gauge(p: int) -> float | None:
        return REGISTRY.get_sample_value("mfaplane_consumer_lag", {"group": f"mfaplane-{group}",
                                                                   "topic": IDENTITY_EVENTS.name, "partition": str(p)})

    assert gauge(0) == 2
    assert all(gauge(p) is not None for p in range(IDENTITY_EVENTS.partitions))



class UserCreatedV2(UserCreated):
    schema_version = 2


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "as a batch"])
async def test_an_event_newer_than_the_consumer_is_held_with_what_follows_it_until_an_upgraded_consumer_releases_them(
        consumers, pool, monkeypatch, together) -> None:
    """A producer upgraded before its consumers: its event is neither handled, nor parked, nor lost. It
    waits with the rest of its partition, in order, while other partitions flow; an upgraded replica
    hands them to its handler, once, whichever replicas try at the same time."""
    held_partition, other_partition = (uuid.uuid4().int % 10**6 + 100 for _ in range(2))
    user = uuid.uuid4()
    (newer_id, newer), (after_id, after), (other_id, other) = _message(user, version=2), _message(user), _message()
    messages = [(IDENTITY_EVENTS.name, held_partition, 1, newer), (IDENTITY_EVENTS.name, held_partition, 2, after),
                (IDENTITY_EVENTS.name, other_partition, 1, other)]
    old = Recorder()
    consumer = consumers(old)
    if together:
        await consumer.process_batch(messages)
    else:
        for message in messages:
            await consumer.process(*message)

    async def held() -> list[int]:
        return [row["offset"] for row in await pool.fetch(
            'SELECT "offset" FROM held_events WHERE partition = $1 ORDER BY 1', held_partition)]

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("mfaplane_events_held", {"group": consumer_group_id(GROUP),
                                                                  "topic": IDENTITY_EVENTS.name})

    assert old.calls == [other_id]
    assert await held() == [1, 2]
    assert not await consumer.release_held(), "the old code still cannot read it"
    assert old.calls == [other_id] and await held() == [1, 2] and gauge() >= 2
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE partition = $1", held_partition) == 0

    monkeypatch.setitem(EVENT_TYPES, "UserCreated", UserCreatedV2)
    monkeypatch.setitem(UPCASTERS, ("UserCreated", 1), lambda payload: payload)
    upgraded = Recorder()
    replicas = [consumers(upgraded), consumers(upgraded)]
    await asyncio.gather(*(replica.release_held() for replica in replicas))
    assert upgraded.calls == [newer_id, after_id]
    assert await held() == []
    await replicas[0].release_held()
    assert gauge() == 0


async def _held(pool, partition: int) -> list[int]:
    return [row["offset"] for row in await pool.fetch(
        'SELECT "offset" FROM held_events WHERE partition = $1 ORDER BY 1', partition)]


def _partition() -> int:
    """A partition number of the test's own, beyond the topic's: held_events is shared by the tests."""
    return uuid.uuid4().int % 10**6 + 100


async def test_a_genuine_event_sent_again_and_again_into_a_held_partition_is_held_once(consumers, pool) -> None:
    """An insider who can write to the topic, but has no key, replays what the owner signed."""
    partition = _partition()
    consumer = consumers(Recorder())
    _, newer = _message(version=2)
    _, genuine = _message()
    for offset, value in enumerate([newer, genuine] + [genuine, newer] * 50, start=1):
        await consumer.process(IDENTITY_EVENTS.name, partition, offset, value)
    assert await _held(pool, partition) == [1, 2]


async def test_an_event_handled_already_does_not_hold_its_partition_again(consumers, pool, monkeypatch) -> None:
    """A redelivery to a replica not upgraded yet, after an upgraded one released the event."""
    partition = _partition()
    newer_id, newer = _message(version=2)
    monkeypatch.setitem(EVENT_TYPES, "UserCreated", UserCreatedV2)
    monkeypatch.setitem(UPCASTERS, ("UserCreated", 1), lambda payload: payload)
    await consumers(Recorder()).process(IDENTITY_EVENTS.name, partition, 1, newer)
    monkeypatch.undo()
    old = Recorder()
    await consumers(old).process(IDENTITY_EVENTS.name, partition, 1, newer)
    assert old.calls == [] and await _held(pool, partition) == []


async def test_an_event_type_its_owner_publishes_but_this_code_does_not_know_is_held(consumers, pool) -> None:
    """A consumer of every type (the gateway's) meets a type added by a newer release of its owner."""
    partition = _partition()
    handler = Recorder()
    _, added = _message(kind="UserNicknamed", payload=lambda user: {"user_id": str(user), "nickname": "x"})
    await consumers(handler).process(IDENTITY_EVENTS.name, partition, 1, added)
    assert handler.calls == [] and await _held(pool, partition) == [1]
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE partition = $1", partition) == 0


async def test_an_operator_parks_a_held_message_no_release_will_read_and_the_rest_flows(consumers, pool) -> None:
    partition = _partition()
    handler = Recorder()
    consumer = consumers(handler)
    never_id, never = _message(version=99)
    after_id, after = _message()
    for offset, value in ((1, never), (2, after)):
        await consumer.process(IDENTITY_EVENTS.name, partition, offset, value)
    assert not await consumer.release_held()

    parked = await park_oldest_held(pool, IDENTITY_EVENTS.name, partition)
    assert (parked["offset"], parked["event_id"]) == (1, never_id)
    assert await park_oldest_held(pool, IDENTITY_EVENTS.name, _partition()) is None
    await consumer.release_held()
    assert handler.calls == [after_id] and await _held(pool, partition) == []
    row = await pool.fetchrow("SELECT event_id, error FROM dead_letters WHERE partition = $1", partition)
    assert row["event_id"] == never_id and row["error"].startswith("parked by an operator while held (newer: ")


async def test_each_consumer_group_of_a_service_handles_holds_and_parks_on_its_own(consumers, pool) -> None:
    """The gateway's read models and its audit log: two groups of one service, with one schema."""
    partition = _partition()
    own, beside = Recorder(), Recorder(failures=99)
    consumer, audit = consumers(own), consumers(beside, retries=1, consumer_group="audit")
    event_id, value = _message()
    for group_consumer in (consumer, audit, consumer):
        await group_consumer.process(IDENTITY_EVENTS.name, partition, 1, value)
    assert own.calls == [event_id], "once in its group, delivered again or not"
    assert beside.calls == [event_id], "and in the other, whose handler failed: the event is parked there"
    parked = await pool.fetch("SELECT consumer_group FROM dead_letters WHERE event_id = $1", event_id)
    assert [row["consumer_group"] for row in parked] == ["audit"]

    newer_id, newer = _message(version=2)
    for group_consumer in (consumer, audit):
        await group_consumer.process(IDENTITY_EVENTS.name, partition, 2, newer)
    assert (await park_oldest_held(pool, IDENTITY_EVENTS.name, partition, "audit"))["event_id"] == newer_id
    assert await _held(pool, partition) == [2], "the own group still holds its copy"


async def _committed(kafka, group: str) -> dict[int, int]:
    """The group's committed offset per partition of the identity topic (those it has one for)."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        partitions = [TopicPartition(IDENTITY_EVENTS.name, p) for p in range(IDENTITY_EVENTS.partitions)]
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}
    finally:
        await admin.close()


async def _commit(kafka, group: str, offset: int) -> None:
    partition = TopicPartition(IDENTITY_EVENTS.name, 0)
    committer = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign([partition])
        await committer.commit({partition: offset})
    finally:
        await committer.stop()


async def test_a_group_beside_the_services_own_starts_where_that_group_is_the_first_time_only(kafka, pool) -> None:
    """It takes over work the own group did (the gateway's audit log): read from the beginning, it would
    go through the whole history again; from the own group's offsets later on, it would skip what the own
    group handled and it did not."""
    def replica(service: str) -> Consumer:
        return Consumer(service, kafka, KEYS, pool, (IDENTITY_EVENTS,), Recorder(), consumer_group="audit")

    upgraded = f"takeover-{uuid.uuid4().hex[:8]}"  # the own group did the work until now
    await pool.execute("DELETE FROM consumer_groups")  # the schema of a service that never ran the group
    await _commit(kafka, consumer_group_id(upgraded), 2)
    held = uuid.uuid4()  # a message the own group holds, behind the offsets it committed
    await pool.execute('INSERT INTO held_events (topic, partition, "offset", event_id, value, reason) '
                       "VALUES ($1, 0, 1, $2, 'x', 'newer_schema_version')", IDENTITY_EVENTS.name, held)
    await asyncio.gather(replica(upgraded).take_over(), replica(upgraded).take_over())  # replicas starting at once
    assert await _committed(kafka, consumer_group_id(upgraded, "audit")) == {0: 2}
    assert await pool.fetchval("SELECT consumer_group FROM held_events WHERE event_id = $1 AND consumer_group <> ''",
                               held) == "audit", "what the own group holds, the group beside holds too"
    await pool.execute("DELETE FROM held_events WHERE event_id = $1", held)

    installed = f"takeover-{uuid.uuid4().hex[:8]}"  # new: the group beside starts before the own commits
    await pool.execute("DELETE FROM consumer_groups")
    await replica(installed).take_over()
    await _commit(kafka, consumer_group_id(installed), 3)
    await replica(installed).take_over()  # another replica, later
    assert await _committed(kafka, consumer_group_id(installed, "audit")) == {}
