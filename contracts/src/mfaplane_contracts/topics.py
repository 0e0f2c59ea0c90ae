"""The topic catalog: every topic the system uses, with its partitions, retention and owner.

The owner is the one service that may publish on the topic: its Kafka user alone may write it
(deploy/k8s/base/kafkausers.yaml), and a consumer applies an event only if the owner signed it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int  # -1 keeps forever
    description: str
    owner: str  # the service that publishes it


FOREVER = -1
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000

IDENTITY_EVENTS = Topic("mfaplane.identity.events", 6, FOREVER, "Users, admins, systems and applications", "identity")
MFA_EVENTS = Topic("mfaplane.mfa.events", 6, FOREVER, "Enrollment aggregates: requirement, setup, verification",
                   "mfa")
SCHEDULER_EVENTS = Topic("mfaplane.scheduler.events", 6, FOREVER, "Deadline timers that fired", "scheduler")

EVENT_TOPICS = (IDENTITY_EVENTS, MFA_EVENTS, SCHEDULER_EVENTS)


def dead_letter_topic(consumer_group: str) -> Topic:
    """Where a consuming service's consumer groups park messages they cannot handle after bounded retries."""
    return Topic(f"mfaplane.{consumer_group}.dead-letter", 1, SEVEN_DAYS_MS, f"Poison messages of {consumer_group}",
                 consumer_group)


CONSUMER_GROUPS = ("scheduler", "notifier", "gateway", "mfa")
DEAD_LETTER_TOPICS = tuple(dead_letter_topic(g) for g in CONSUMER_GROUPS)
ALL_TOPICS = EVENT_TOPICS + DEAD_LETTER_TOPICS
TOPICS_BY_NAME = {topic.name: topic for topic in ALL_TOPICS}

# Consumer groups beside a consuming service's own: the gateway appends every event to its audit log in
# mfaplane-gateway-audit, apart from projecting its read models in mfaplane-gateway (consumer.py).
MORE_CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {"gateway": ("audit",)}


def consumer_group_id(service: str, part: str = "") -> str:
    """The Kafka group id of a service's consumer: its own (`part` empty), or one beside it."""
    return f"mfaplane-{service}-{part}" if part else f"mfaplane-{service}"


def consumer_group_ids(service: str) -> tuple[str, ...]:
    """Every Kafka group a consuming service reads in: its own, then those beside it."""
    return tuple(consumer_group_id(service, part) for part in ("", *MORE_CONSUMER_GROUPS.get(service, ())))
