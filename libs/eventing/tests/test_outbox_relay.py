"""The outbox relay against real PostgreSQL and the Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mfaplane_contracts.identity_events import UserCreated, UserUpdated
from mfaplane_contracts.topics import IDENTITY_EVENTS
from mfaplane_eventing import event_signing, outbox_relay
from mfaplane_eventing.event_store import Cause, EventStore
from mfaplane_eventing.outbox_relay import OutboxRelay
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys

RELAY_KEY = ServiceKey.generate()  # the key of the service whose relay this is: identity, which owns the topic


@pytest.fixture(scope="module")
async def producer(kafka):
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    yield producer
    await producer.stop()


async def _published_for(kafka, key: str, expected: int) -> list[dict]:
    """Reads every partition of the identity topic from the start; returns the messages of `key`."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(IDENTITY_EVENTS.name, p) for p in range(IDENTITY_EVENTS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[dict] = []
        async with asyncio.timeout(15):
            while len(found) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    found += [json.loads(m.value) for m in messages if m.key == key.encode()]
        return found
    finally:
        await consumer.stop()


def _cause() -> Cause:
    return Cause(actor="admin:test", correlation_id=uuid.uuid4())


async def _append_user(store: EventStore, names: list[str]) -> str:
    user = uuid.uuid4()
    events = [UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com", name=names[0])]
    events += [UserUpdated(user_id=user, email=f"{user.hex[:8]}@example.com", name=n) for n in names[1:]]
    await store.append(str(user), 0, events, _cause())
    return str(user)


async def _drain(relay: OutboxRelay, pool) -> None:
    async with pool.acquire() as conn:
        while await relay.publish_batch(conn):
            pass


async def _running(relay: OutboxRelay) -> asyncio.Task:
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0.3)
    return task


async def _stopped(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_relay_publishes_in_order_keyed_by_aggregate_and_empties_the_outbox(store, producer, kafka) -> None:
    key = await _append_user(store, ["a", "b", "c"])
    await _drain(OutboxRelay(store.pool, producer, "eventing-test", batch_size=2, key=RELAY_KEY), store.pool)
    published = await _published_for(kafka, key, 3)
    assert [m["aggregate_version"] for m in published] == [1, 2, 3]
    assert [m["payload"]["name"] for m in published] == ["a", "b", "c"]
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    _assert_signed_by_the_relay(published)


async def test_only_one_relay_per_service_publishes_and_a_standby_takes_over(store, producer, kafka) -> None:
    first = OutboxRelay(store.pool, producer, "eventing-test-lock", batch_size=10, key=RELAY_KEY)
    second = OutboxRelay(store.pool, producer, "eventing-test-lock", batch_size=10, key=RELAY_KEY)
    holder = await _running(first)
    standby = None
    try:
        held_by = await _lock_holder(store.pool, "eventing-test-lock")
        assert held_by is not None, "the first relay holds the lock"
        standby = await _running(second)
        await asyncio.sleep(outbox_relay.STANDBY_POLL_SECONDS * 1.5)  # the standby has asked at least once
        assert await _lock_holder(store.pool, "eventing-test-lock") == held_by, "the standby waits"
        await _stopped(holder)
        key = await _append_user(store, ["published by the standby"])  # the only relay still running
        assert [m["payload"]["name"] for m in await _published_for(kafka, key, 1)] == ["published by the standby"]
    finally:
        await _stopped(holder)
        if standby is not None:
            await _stopped(standby)


async def test_republish_sends_stored_history_again(store, producer, kafka) -> None:
    key = await _append_user(store, ["x", "y"])
    relay = OutboxRelay(store.pool, producer, "eventing-test", batch_size=100, key=RELAY_KEY)
    await _drain(relay, store.pool)
    first_position = await store.pool.fetchval("SELECT min(position) FROM events WHERE aggregate_id = $1", key)
    queued = await store.republish(first_position)
    assert queued >= 2
    await _drain(relay, store.pool)
    published = await _published_for(kafka, key, 4)
    assert [m["aggregate_version"] for m in published] == [1, 2, 1, 2]
    assert published[0]["event_id"] == published[2]["event_id"], "the same events, not new ones"
    _assert_signed_by_the_relay(published)


def _assert_signed_by_the_relay(published: list[dict]) -> None:
    keys = TrustedKeys.from_json(json.dumps({"identity": [RELAY_KEY.public_base64()]}))
    for message in published:
        assert message["key_id"] == RELAY_KEY.key_id
        event_signing.check(message, IDENTITY_EVENTS.name, keys)  # raises if the signature does not hold


async def test_a_relay_whose_session_is_lost_takes_the_lock_again_and_goes_on(store, producer, kafka) -> None:
    """A relay that went on publishing without its lock would publish beside a replica that took it."""
    task = await _running(OutboxRelay(store.pool, producer, "eventing-test-lost", batch_size=10, key=RELAY_KEY))
    try:
        lost = await _lock_holder(store.pool, "eventing-test-lost")
        assert await store.pool.fetchval("SELECT pg_terminate_backend($1)", lost)
        key = await _append_user(store, ["after the session was lost"])
        assert [m["payload"]["name"] for m in await _published_for(kafka, key, 1)] == ["after the session was lost"]
        again = await _lock_holder(store.pool, "eventing-test-lost")
        assert again not in (None, lost), "the relay holds the lock again, on a new session"
    finally:
        await _stopped(task)


async def _lock_holder(pool, service: str) -> int | None:
    return await pool.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid::int = hashtext($1)",
        f"mfaplane-outbox-relay:{service}")


class _FaultyOnce:
    """The real producer, but its first send meets `fault` (injected here): it raises, or never returns."""

    def __init__(self, producer: AIOKafkaProducer, fault: Callable[[], Awaitable[None]]) -> None:
        self._producer = producer
        self._fault = fault
        self.faulted = False

    async def send(self, *args, **kwargs):
        if not self.faulted:
            self.faulted = True
            await self._fault()
        return await self._producer.send(*args, **kwargs)


async def _raise() -> None:
    raise RuntimeError("an unexpected failure")


async def _hang() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(("fault", "logged"), [(_raise, "outbox relay failed unexpectedly, retrying"),
                                               (_hang, "outbox relay failed, retrying")])
async def test_the_relay_outlives_a_failing_or_hanging_send(store, producer, kafka, caplog, monkeypatch,
                                                            fault, logged) -> None:
    monkeypatch.setattr(outbox_relay, "BATCH_TIMEOUT_SECONDS", 0.5)
    faulty = _FaultyOnce(producer, fault)
    key = await _append_user(store, ["published after the fault"])
    task = await _running(OutboxRelay(store.pool, faulty, "eventing-test-fault", batch_size=10, key=RELAY_KEY))
    try:
        assert [m["payload"]["name"] for m in await _published_for(kafka, key, 1)] == ["published after the fault"]
        assert faulty.faulted
        assert logged in caplog.messages
    finally:
        await _stopped(task)
