from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.event_store import EventStore
from mfaplane_eventing.kafka_security import KafkaSecurity
from mfaplane_eventing.settings import KafkaSettings


@pytest.fixture(scope="session")
async def schema(infra) -> AsyncIterator[str]:
    name = f"eventing_test_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, name, [db.EVENTING_MIGRATIONS])
    yield name


@pytest.fixture(scope="session")
async def pool(infra, schema):
    pool = await db.create_pool(infra.database_url, schema)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool) -> EventStore:
    return EventStore(pool, SystemClock())


@pytest.fixture(scope="session")
def kafka(_stack, infra) -> KafkaSecurity:
    """How the tests reach the stack's broker: mutual TLS with the `tests` client certificate."""
    env = {name.lower(): value for name, value in _stack.kafka_env("tests").items()}
    return KafkaSecurity.from_settings(KafkaSettings(**{"kafka_bootstrap_servers": infra.kafka_bootstrap, **env}))
