"""A connection given back to the pool is reset by a round trip only when it took a session lock."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from mfaplane_eventing import db

LOCK = "test-pool-reset"


@pytest.fixture
async def one_connection(infra, schema):
    pool = await db.create_pool(infra.database_url, schema, max_size=1)
    yield pool
    await pool.close()


async def lock_free(infra) -> bool:
    """Whether another session can take LOCK now (and gives it back at once)."""
    other = await asyncpg.connect(infra.database_url)
    try:
        return await other.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", LOCK)
    finally:
        await other.close()


async def statements_sent(pool: asyncpg.Pool, work) -> list[str]:
    """What the pool's one connection sent while `work` ran on it and while it was given back."""
    sent: list[str] = []

    def record(query) -> None:
        sent.append(query.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(record)
        await work(conn)
    async with pool.acquire() as conn:  # the same connection (max_size=1): stop recording
        await asyncio.sleep(0.05)  # query loggers are called soon after the query, not during it
        conn.remove_query_logger(record)
    return sent


async def test_a_plain_connection_goes_back_without_a_round_trip(one_connection) -> None:
    async def read(conn):
        await conn.fetchval("SELECT 1")

    assert await statements_sent(one_connection, read) == ["SELECT 1"]


async def test_a_session_lock_left_held_is_released_with_the_connection(infra, one_connection) -> None:
    async def lock_and_forget(conn):
        assert await conn.try_session_lock(LOCK)

    sent = await statements_sent(one_connection, lock_and_forget)

    assert len(sent) == 2 and "pg_advisory_unlock_all" in sent[1]
    assert await lock_free(infra)
    # Released once, the connection is plain again.
    assert await statements_sent(one_connection, lambda conn: conn.fetchval("SELECT 1")) == ["SELECT 1"]


async def test_a_lock_not_obtained_leaves_the_connection_plain(infra, one_connection) -> None:
    holder = await asyncpg.connect(infra.database_url)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", LOCK)

        async def try_lock(conn):
            assert not await conn.try_session_lock(LOCK)

        assert len(await statements_sent(one_connection, try_lock)) == 1  # no reset after it
    finally:
        await holder.close()
