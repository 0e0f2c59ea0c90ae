"""The embedded broker speaks mutual TLS only: Tansu behind the TLS terminator, real processes on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from mfaplane_devstack import Pki, Supervisor, client_options, ensure_pki, start_kafka

from .conftest import tls_client

REFUSAL_WITHIN = 20.0  # seconds a refused client is given to fetch metadata anyway


async def fetches_metadata(client: dict[str, Any]) -> bool:
    """Whether a client with these options gets the broker's metadata (bounded: False if it cannot in time)."""
    admin = AIOKafkaAdminClient(**client, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(_list_topics(admin), REFUSAL_WITHIN)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


async def _list_topics(admin: AIOKafkaAdminClient) -> None:
    await admin.start()
    await admin.list_topics()


def terminator_log_says(supervisor: Supervisor, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in supervisor.log_path("kafka-tls").read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def without_certificate(bootstrap: str, pki: Pki) -> dict[str, Any]:
    return client_options({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SSL_CA_FILE": str(pki.ca)})  # SSL by default


async def test_a_client_with_its_certificate_creates_a_topic_produces_and_consumes(supervisor: Supervisor,
                                                                                   pki: Pki) -> None:
    client = tls_client(start_kafka(supervisor, pki), pki)
    assert client["security_protocol"] == "SSL"

    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("tls.round-trip", 1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**client)
    await producer.start()
    try:
        payload = bytes(range(256)) * 2048  # 512 KiB: several reads and writes through the terminator
        sent = await producer.send_and_wait("tls.round-trip", payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**client, auto_offset_reset="earliest", fetch_max_bytes=4 * 1024 * 1024,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition("tls.round-trip", 0)])
        received = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (received.key, received.value, received.offset) == (b"k", payload, sent.offset)


async def test_a_client_without_a_certificate_is_refused(supervisor: Supervisor, pki: Pki) -> None:
    bootstrap = start_kafka(supervisor, pki)

    assert not await fetches_metadata(without_certificate(bootstrap, pki))
    assert terminator_log_says(supervisor, "PEER_DID_NOT_RETURN_A_CERTIFICATE")


async def test_a_client_certificate_from_another_ca_is_refused(supervisor: Supervisor, pki: Pki,
                                                               tmp_path: Path) -> None:
    bootstrap = start_kafka(supervisor, pki)
    other = ensure_pki(tmp_path / "other-pki", ["tests"])
    # it trusts the right CA, but presents a certificate (with the right name) from another one
    client = client_options({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SSL_CA_FILE": str(pki.ca),
                             "KAFKA_SSL_CERT_FILE": str(other.client_cert("tests")),
                             "KAFKA_SSL_KEY_FILE": str(other.client_key("tests"))})

    assert not await fetches_metadata(client)
    assert terminator_log_says(supervisor, "refused TLS handshake")
    assert "CERTIFICATE_VERIFY_FAILED" in supervisor.log_path("kafka-tls").read_text()


async def test_a_client_that_trusts_another_ca_refuses_the_broker(supervisor: Supervisor, pki: Pki,
                                                                  tmp_path: Path) -> None:
    bootstrap = start_kafka(supervisor, pki)
    other = ensure_pki(tmp_path / "other-pki", ["tests"])

    assert not await fetches_metadata(tls_client(bootstrap, other))


async def test_a_trusting_client_with_its_own_certificate_also_checks_the_broker(supervisor: Supervisor, pki: Pki,
                                                                                 tmp_path: Path) -> None:
    """The server check on its own: the client's certificate is from the broker's CA, its trust is not."""
    bootstrap = start_kafka(supervisor, pki)
    other = ensure_pki(tmp_path / "other-pki", [])
    client = client_options({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SSL_CA_FILE": str(other.ca),
                             "KAFKA_SSL_CERT_FILE": str(pki.client_cert("tests")),
                             "KAFKA_SSL_KEY_FILE": str(pki.client_key("tests"))})

    assert not await fetches_metadata(client)
    assert await fetches_metadata(tls_client(bootstrap, pki))  # the same broker, trusted


async def test_a_plaintext_client_is_refused(supervisor: Supervisor, pki: Pki) -> None:
    bootstrap = start_kafka(supervisor, pki)

    assert not await fetches_metadata(client_options({"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                                      "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}))
    assert terminator_log_says(supervisor, "refused TLS handshake")


async def test_the_broker_stopped_is_unreachable_and_comes_back_behind_the_same_address(supervisor: Supervisor,
                                                                                         pki: Pki) -> None:
    client = tls_client(start_kafka(supervisor, pki), pki)

    await asyncio.to_thread(supervisor.stop, "kafka")
    assert supervisor.is_running("kafka-tls")
    assert not await fetches_metadata(client)

    await asyncio.to_thread(supervisor.restart, "kafka")
    assert await fetches_metadata(client)
