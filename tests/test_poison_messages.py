"""Poison messages on every consumed topic, end to end: each consuming group parks them on its
dead-letter topic and goes on consuming.

What the consumer (libs/eventing consumer.py) treats as poison, parked at once without retries:
undecodable JSON, a JSON value that is not an object, an oversized message, and an event the group
acts on that its topic's owner did not sign (an event type the contract registry does not know, or
a schema version newer than the registry's, is refused for that first, as no owner signed these).
An event type a service does not act on is not poison, whatever it holds: it is skipped unchecked,
since it changes nothing there, and must not be dead-lettered.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from fault_tools import DeadLetterTap, eventually, schema
from invariants import CONSUMERS, HANDLED
from mfaplane_contracts.topics import ALL_TOPICS
from mfaplane_eventing.consumer import MAX_MESSAGE_BYTES
from portal_flows import new_user, ok

pytestmark = pytest.mark.slow

CONSUMED_TOPICS = [t for t in ALL_TOPICS if any(t.name in topics for topics in CONSUMERS.values())]
POISON_KINDS = ("malformed_json", "not_an_object", "unknown_type", "unknown_version", "oversized")
TYPE_OF = {"unknown_type": "NoSuchEventType", "unknown_version": "UserCreated"}  # the others have none


def parked_by(group: str, kind: str) -> bool:
    """Whether `group` parks this kind of poison: it cannot be read, or it is a type the group acts on."""
    return kind not in TYPE_OF or HANDLED[group] is None or TYPE_OF[kind] in HANDLED[group]


def envelope(marker: str, event_type: str, version: int) -> dict:
    return {
        "event_id": str(uuid.uuid4()), "type": event_type, "schema_version": version, "aggregate_type": "user",
        "aggregate_id": marker, "aggregate_version": 1, "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()), "causation_id": None, "command_id": None, "actor": "test:poison",
        "payload": {"user_id": str(uuid.uuid4()), "email": "poison@example.com", "name": "Poison"},
    }


def poison(kind: str, marker: str) -> bytes:
    """A message of this kind whose first bytes carry `marker` (the dead-letter copy keeps the start)."""
    match kind:
        case "malformed_json":
            return f'{{"marker": "{marker}", "type": '.encode()
        case "not_an_object":
            return json.dumps([marker, "not", "an", "envelope"]).encode()
        case "unknown_type":
            return json.dumps(envelope(marker, TYPE_OF[kind], 1)).encode()
        case "unknown_version":
            return json.dumps(envelope(marker, TYPE_OF[kind], 99)).encode()
        case "oversized":
            return json.dumps({"marker": marker, "padding": "x" * MAX_MESSAGE_BYTES}).encode()
    raise ValueError(kind)


async def publish_poison(client: dict[str, Any], run: str) -> set[tuple[str, str, str]]:
    """Every kind of poison on every partition of every consumed topic; the (topic, kind, marker) sent."""
    sent = set()
    producer = AIOKafkaProducer(**client, max_request_size=2 * MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for topic in CONSUMED_TOPICS:
            for partition in range(topic.partitions):
                for kind in POISON_KINDS:
                    marker = f"poison-{run}-{topic.name}-{partition}-{kind}"
                    await producer.send_and_wait(topic.name, poison(kind, marker), partition=partition)
                    sent.add((topic.name, kind, marker))
    finally:
        await producer.stop()
    return sent


def markers_in(values: list[bytes], run: str) -> set[str]:
    prefix = f"poison-{run}-".encode()
    found = set()
    for value in values:
        start = value.find(prefix)
        if start >= 0:
            found.add(value[start:].split(b'"', 1)[0].decode())
    return found


async def dead_lettered(stack, group: str, event_id: str) -> bool:
    async with schema(stack, group) as conn:
        return bool(await conn.fetchval("SELECT count(*) FROM dead_letters WHERE event_id = $1::uuid", event_id))


async def test_poison_on_every_topic_is_dead_lettered_by_each_consumer_which_carries_on(
        stack, admin, portal, clock) -> None:
    run = uuid.uuid4().hex[:8]
    client = stack.kafka_client_options()
    async with contextlib.AsyncExitStack() as taps:
        tap = {group: await taps.enter_async_context(DeadLetterTap(client, group)) for group in CONSUMERS}
        sent = await publish_poison(client, run)

        # A known event type the mfa, scheduler and notifier groups do not act on (a system registered):
        # skipped, never parked. (Published before the work below, which takes every group seconds.)
        system = ok(await admin.post("/v1/systems", json={"name": f"poison-{run}", "kind": "linux"}))
        skipped = system["event_ids"][0]
        # Then real work through every consumer, on every topic: a user, required, whose deadline passes.
        user_id, email = await new_user(admin, enrollment_days=1)
        clock.advance(timedelta(days=1, minutes=1))

        async def expired() -> bool:
            user = await admin.get(f"/v1/users/{user_id}")
            return user.status_code == 200 and user.json()["status"] == "expired"

        await eventually(expired, 120, "the gateway shows the user expired (identity, mfa, scheduler topics)")
        async with schema(stack, "notifier") as conn:
            await eventually(lambda: conn.fetchval(
                "SELECT count(DISTINCT kind) FROM notifications WHERE principal_id = $1::uuid AND status = 'sent' "
                "AND kind IN ('required', 'expired')", user_id), 120,
                "the notifier mailed 'required' (mfa topic) and 'expired' (scheduler topic)", done=lambda n: n == 2)

        for group, topics in CONSUMERS.items():
            records = await tap[group].records_since()
            expected = {marker for topic, kind, marker in sent if topic in topics and parked_by(group, kind)}
            assert markers_in(records, run) == expected, group
            assert not any(skipped.encode() in record for record in records), f"{group} parked a known event"
            assert not await dead_lettered(stack, group, skipped), group
