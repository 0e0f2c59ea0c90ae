from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.event_store import EventStore


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
