"""Raw limits shared by scenarios: the bare building blocks the system's work is made of.

`store_and_publish(n)`: insert n event rows like the system's (the same `events` table, one
envelope each) with asyncpg COPY in batches of 1,000, each batch committed; then produce n messages
of the same size, keyed by aggregate id, with aiokafka (acks=all, linger 5 ms: the relay's
producer settings) and wait for every acknowledgement. Every event the system handles is at least
stored once and published once, so no pipeline of it can beat this.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import BenchStack
from mfaplane_contracts.mfa_events import MFARequired, enrollment_id
from mfaplane_contracts.topics import Topic
from mfaplane_devstack import ensure_topics

BATCH = 1000
RAW_TOPIC = Topic("mfaplane.bench.raw", 6, -1, "bench: raw produce rate", "bench")
COLUMNS = ("event_id", "type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version", "occurred_at",
           "correlation_id", "actor", "topic", "payload")


@dataclass
class StoreAndPublish:
    rows: int
    insert_seconds: float
    produce_seconds: float

    @property
    def seconds(self) -> float:
        return self.insert_seconds + self.produce_seconds

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def sample_events(n: int) -> list[tuple]:
    """n rows of the events table: MFARequired envelopes for n distinct users."""
    now = datetime.now(UTC)
    rows = []
    for _ in range(n):
        principal = uuid.uuid4()
        body = MFARequired(principal_id=principal, scope="user_portal", principal_kind="user", enrollment_days=7,
                           deadline=now + timedelta(days=7))
        rows.append((uuid.uuid4(), body.event_type, 1, body.aggregate_type, enrollment_id("user_portal", principal), 1,
                     now, uuid.uuid4(), "admin:bench", body.topic, json.dumps(body.model_dump(mode="json"))))
    return rows


def message(row: tuple) -> bytes:
    """The row as the relay would publish it: its envelope's JSON."""
    envelope = {"event_id": str(row[0]), "type": row[1], "schema_version": row[2], "aggregate_type": row[3],
                "aggregate_id": row[4], "aggregate_version": row[5], "occurred_at": row[6].isoformat(),
                "correlation_id": str(row[7]), "causation_id": None, "command_id": str(uuid.uuid4()),
                "actor": row[8], "payload": json.loads(row[10])}
    return json.dumps(envelope).encode()


async def store_and_publish(bench: BenchStack, n: int) -> StoreAndPublish:
    rows = sample_events(n)
    async with bench.scratch_schema("bench_raw", []) as schema:
        conn = await asyncpg.connect(bench.database_url, server_settings={"search_path": schema})
        try:
            started = time.perf_counter()
            for i in range(0, n, BATCH):
                async with conn.transaction():
                    await conn.copy_records_to_table("events", records=rows[i:i + BATCH], columns=COLUMNS)
            insert_seconds = time.perf_counter() - started
        finally:
            await conn.close()
    bench.infra()  # started, if it was not yet
    client = bench.stack.kafka_client_options("bench")  # a client certificate of its own, made on first use
    produce_seconds = await produce(client, [(r[4].encode(), message(r)) for r in rows])
    return StoreAndPublish(n, insert_seconds, produce_seconds)


async def produce(client: dict[str, Any], messages: list[tuple[bytes, bytes]]) -> float:
    await ensure_topics(client, [RAW_TOPIC])
    producer = AIOKafkaProducer(**client, acks="all", linger_ms=5, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(RAW_TOPIC.name, b"warm-up", key=b"warm-up")
        started = time.perf_counter()
        deliveries = [await producer.send(RAW_TOPIC.name, value=value, key=key) for key, value in messages]
        await asyncio.gather(*deliveries)
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await _delete_topic(client)


async def _delete_topic(client: dict[str, Any]) -> None:
    admin = AIOKafkaAdminClient(**client)
    try:
        await admin.start()
        await admin.delete_topics([RAW_TOPIC.name])
    except Exception:  # noqa: BLE001 - a leftover bench topic is harmless (Tansu may not delete)
        pass
    finally:
        await admin.close()
