from __future__ import annotations

import asyncio

import pytest

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mfaplane_contracts.topics import ALL_TOPICS, MFA_EVENTS
from mfaplane_devstack import Supervisor, ensure_topics, start_kafka


async def test_ensure_topics_creates_the_catalog_once(supervisor: Supervisor) -> None:
    bootstrap = start_kafka(supervisor)

    assert sorted(await ensure_topics(bootstrap, ALL_TOPICS)) == sorted(t.name for t in ALL_TOPICS)
    assert await ensure_topics(bootstrap, ALL_TOPICS) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([MFA_EVENTS.name])
    finally:
        await admin.close()
    assert len(described["partitions"]) == MFA_EVENTS.partitions


async def test_ensure_topics_refuses_a_topic_a_client_created_first(supervisor: Supervisor) -> None:
    bootstrap = start_kafka(supervisor)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:  # a client that asks for a missing topic makes Tansu create it with its default partitions
        await producer.send_and_wait(MFA_EVENTS.name, b"early", key=b"user-1")
    finally:
        await producer.stop()

    with pytest.raises(RuntimeError, match=f"{MFA_EVENTS.name} has 4 .the catalog: {MFA_EVENTS.partitions}."):
        await ensure_topics(bootstrap, [MFA_EVENTS])


async def test_a_message_round_trips_through_a_topic(supervisor: Supervisor) -> None:
    bootstrap = start_kafka(supervisor)
    await ensure_topics(bootstrap, [MFA_EVENTS])

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(MFA_EVENTS.name, b'{"hello": 1}', key=b"user-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(MFA_EVENTS.name, sent.partition)])
        received = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert (received.key, received.value, received.offset) == (b"user-1", b'{"hello": 1}', sent.offset)
