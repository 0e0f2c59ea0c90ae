from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mfaplane_contracts.topics import ALL_TOPICS, MFA_EVENTS
from mfaplane_devstack import Pki, Supervisor, ensure_topics, start_kafka

from .conftest import tls_client


async def test_ensure_topics_creates_the_catalog_once(supervisor: Supervisor, pki: Pki) -> None:
    client = tls_client(start_kafka(supervisor, pki), pki)

    assert sorted(await ensure_topics(client, ALL_TOPICS)) == sorted(t.name for t in ALL_TOPICS)
    assert await ensure_topics(client, ALL_TOPICS) == []

    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        [described] = await admin.describe_topics([MFA_EVENTS.name])
    finally:
        await admin.close()
    assert len(described["partitions"]) == MFA_EVENTS.partitions


async def test_ensure_topics_refuses_a_topic_a_client_created_first(supervisor: Supervisor, pki: Pki) -> None:
    client = tls_client(start_kafka(supervisor, pki), pki)
    producer = AIOKafkaProducer(**client)
    await producer.start()
    try:  # a client that asks for a missing topic makes Tansu create it with its default partitions
        await producer.send_and_wait(MFA_EVENTS.name, b"early", key=b"user-1")
    finally:
        await producer.stop()

    with pytest.raises(RuntimeError, match=f"{MFA_EVENTS.name} has 4 .the catalog: {MFA_EVENTS.partitions}."):
        await ensure_topics(client, [MFA_EVENTS])


async def test_a_message_round_trips_through_a_topic(supervisor: Supervisor, pki: Pki) -> None:
    client = tls_client(start_kafka(supervisor, pki), pki)
    await ensure_topics(client, [MFA_EVENTS])

    producer = AIOKafkaProducer(**client)
    await producer.start()
    try:
        sent = await producer.send_and_wait(MFA_EVENTS.name, b'{"hello": 1}', key=b"user-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(**client, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(MFA_EVENTS.name, sent.partition)])
        received = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert (received.key, received.value, received.offset) == (b"user-1", b'{"hello": 1}', sent.offset)
