"""How far a consumer group is behind: each partition's end offset against the group's committed offset.

A consumer sets `mfaplane_consumer_lag` from this every LAG_REFRESH_SECONDS rather than from the
messages it receives. A consumer that receives nothing (stuck behind a partition its broker does
not serve, or no longer owning partitions after a rebalance) would otherwise keep showing its last
value, and the MfaplaneConsumerStalled alert, which needs lag above 0, would never fire. A
measurement that fails (the broker away) is logged as a warning and leaves the last values.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mfaplane_contracts.topics import Topic
from mfaplane_eventing.kafka_security import KafkaSecurity

LAG_REFRESH_SECONDS = 30.0


async def offsets(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, group: str,
                  topics: Iterable[Topic]) -> dict[TopicPartition, tuple[int, int]]:
    """Every partition of `topics`: (the group's committed offset, 0 if none; the partition's end).

    `reader` is a consumer without a group (it only asks for end offsets)."""
    partitions = [TopicPartition(topic.name, p) for topic in topics for p in range(topic.partitions)]
    ends = await reader.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return {tp: (max(committed[tp].offset if tp in committed else 0, 0), ends[tp]) for tp in partitions}


async def lag(kafka: KafkaSecurity, group: str, topics: Iterable[Topic]) -> dict[TopicPartition, int]:
    """Messages behind per partition of `topics` (0 where the group is at the end)."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    reader = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        found = await offsets(admin, reader, group, topics)
    finally:
        try:
            await reader.stop()
        finally:
            await admin.close()
    return {tp: max(end - committed, 0) for tp, (committed, end) in found.items()}
