"""How far a consumer group is behind: each partition's end offset against the group's committed offset;
and a new group's start where another group has got to (`take_over`).

A consumer sets `mfaplane_consumer_lag` from this every LAG_REFRESH_SECONDS rather than from the
messages it receives. A consumer that receives nothing (stuck behind a partition its broker does
not serve, or no longer owning partitions after a rebalance) would otherwise keep showing its last
value, and the MfaplaneConsumerStalled alert, which needs lag above 0, would never fire. A
measurement that fails (the broker away) is logged as a warning and leaves the last values.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from mfaplane_contracts.topics import Topic
from mfaplane_eventing.kafka_security import KafkaSecurity

LAG_REFRESH_SECONDS = 30.0


async def offsets(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, group: str,
                  topics: Iterable[Topic]) -> dict[TopicPartition, tuple[int, int]]:
    """Every partition of `topics`: (the group's committed offset, 0 if none; the partition's end).

    `reader` is a consumer without a group (it only asks for end offsets)."""
    partitions = _partitions(topics)
    ends = await reader.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return {tp: (max(committed[tp].offset if tp in committed else 0, 0), ends[tp]) for tp in partitions}


async def lag(kafka: KafkaSecurity, group: str, topics: Iterable[Topic]) -> dict[TopicPartition, int]:
    """Messages behind per partition of `topics` (0 where the group is at the end)."""
    async with _clients(kafka) as (admin, reader):
        found = await offsets(admin, reader, group, topics)
    return {tp: max(end - committed, 0) for tp, (committed, end) in found.items()}


async def take_over(kafka: KafkaSecurity, group: str, source: str, topics: Iterable[Topic]) -> bool:
    """Commits `source`'s committed offsets as `group`'s if `group` has committed none; True if it did.

    Partitions `source` has committed nothing for are left out: `group` reads them from their beginning."""
    partitions = _partitions(topics)
    # Without a subscription the committer is no member of `group`: Kafka takes the commit of an empty group.
    async with _clients(kafka, group_id=group) as (admin, committer):
        if _committed(await admin.list_consumer_group_offsets(group, partitions=partitions)):
            return False
        theirs = _committed(await admin.list_consumer_group_offsets(source, partitions=partitions))
        if theirs:
            committer.assign(list(theirs))
            await committer.commit(theirs)
        return bool(theirs)


def _partitions(topics: Iterable[Topic]) -> list[TopicPartition]:
    return [TopicPartition(topic.name, p) for topic in topics for p in range(topic.partitions)]


def _committed(found: dict[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, int]:
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


@contextlib.asynccontextmanager
async def _clients(kafka: KafkaSecurity, **consumer: Any) -> AsyncIterator[tuple[AIOKafkaAdminClient,
                                                                                  AIOKafkaConsumer]]:
    """An admin client and a consumer that commits nothing by itself (`consumer`: more of its options),
    started, then stopped."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    reader = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False, **consumer)
    try:
        await admin.start()
        await reader.start()
        yield admin, reader
    finally:
        try:
            await reader.stop()
        finally:
            await admin.close()
