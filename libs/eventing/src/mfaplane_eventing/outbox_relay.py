"""Publishes the outbox to Kafka: in batches, keyed by aggregate id, at least once.

Only one relay per service publishes at a time: it holds a PostgreSQL advisory lock on a
dedicated connection, and replicas wait for it. Two relays publishing concurrently could each send
part of one aggregate's events and reorder them on the partition. If the holder dies its connection
closes, the lock is released and a waiting replica takes over. The relay reads and deletes the
outbox on that same connection: if the session is lost (and the lock with it, which a replica may
then take), its next statement fails rather than publishing beside the new holder. A batch is deleted from the outbox
only after Kafka acknowledged every message in it, so a crash in between publishes it again
(consumers are idempotent). Each batch is signed with the service's key as it goes out
(event_signing.py).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from aiokafka import AIOKafkaProducer

from mfaplane_eventing import event_signing, loops
from mfaplane_eventing.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG
from mfaplane_eventing.service_keys import ServiceKey

IDLE_POLL_SECONDS = 0.05
STANDBY_POLL_SECONDS = 1.0
# A batch neither published nor failed by then is stuck somewhere (a half-open connection, a client
# that never completes a delivery): the loop starts over, on a new session, rather than stall unseen.
BATCH_TIMEOUT_SECONDS = 60.0


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, service: str, batch_size: int,
                 key: ServiceKey) -> None:
        self._pool = pool
        self._producer = producer
        self._key = key
        self._lock_name = f"mfaplane-outbox-relay:{service}"
        self._batch_size = batch_size

    async def run(self) -> None:
        await loops.repeat("outbox relay", self._publish_while_holding_lock, STANDBY_POLL_SECONDS)

    async def _publish_while_holding_lock(self) -> bool:
        """Publishes until a failure; False at once if another replica holds the lock."""
        async with self._pool.acquire() as lock_conn:
            if not await lock_conn.try_session_lock(self._lock_name):
                return False
            try:
                while True:
                    async with asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                        published = await self.publish_batch(lock_conn)
                    if not published:
                        await asyncio.sleep(IDLE_POLL_SECONDS)
            finally:
                # Raising here would hide why the loop ended; on a lost connection the lock is gone anyway.
                with contextlib.suppress(*loops.EXPECTED_FAILURES):
                    await lock_conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self._lock_name)

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT position, topic, key, value FROM outbox ORDER BY position LIMIT $1", self._batch_size
        )
        if not rows:
            OUTBOX_BACKLOG.set(0)
            return 0
        values = event_signing.sign_batch([row["value"] for row in rows], self._key)
        deliveries = [await self._producer.send(row["topic"], value=value, key=row["key"].encode())
                      for row, value in zip(rows, values, strict=True)]
        await asyncio.gather(*deliveries)
        await conn.execute("DELETE FROM outbox WHERE position = ANY($1::bigint[])", [r["position"] for r in rows])
        for row in rows:
            EVENTS_PUBLISHED.labels(row["topic"]).inc()
        OUTBOX_BACKLOG.set(await conn.fetchval("SELECT count(*) FROM outbox"))
        return len(rows)
