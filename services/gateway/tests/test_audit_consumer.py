"""The audit log and the read models, each written by a consumer group of its own: projections wait neither
for the audit chain's lock nor for each other, and the chain holds every event once whatever is delivered
again."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.service_keys import TrustedKeys
from mfaplane_gateway.audit import audit_log, audit_verify
from mfaplane_gateway.read_models import projector, replay


def _user_history(history) -> list[Envelope]:
    """A user created and required to use MFA: rows of that user alone."""
    user = uuid.uuid4()
    return [history.envelope(identity.UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com", name="A User")),
            history.envelope(mfa.MFARequired(principal_id=user, scope="user_portal", principal_kind="user",
                                             enrollment_days=7, deadline=history.now + timedelta(days=7)))]


async def _handle(conn: asyncpg.Connection, handler, envelopes: list[Envelope]) -> None:
    async with conn.transaction():
        await handler(conn, envelopes, SystemClock())


async def _required(pool: asyncpg.Pool, envelopes: list[Envelope]) -> list[bool]:
    """Whether each user of `envelopes` is listed as required to use MFA (None: not listed)."""
    users = [uuid.UUID(e.payload["user_id"]) for e in envelopes if e.type == "UserCreated"]
    found = dict(await pool.fetch("SELECT principal_id, required FROM principals_v1 WHERE principal_id = ANY($1)",
                                  users))
    return [found.get(user) for user in users]


async def _chain(pool: asyncpg.Pool) -> tuple[int, list[uuid.UUID]]:
    """The verified chain's length (it fails on a broken link) and its event ids in seq order."""
    chain, _, broken = await audit_verify.verify(audit_log.stored_records(pool), TrustedKeys({}))
    assert broken is None, broken
    return chain.seq, [r["event_id"] for r in await pool.fetch("SELECT event_id FROM audit_log ORDER BY seq")]


async def test_projections_wait_neither_for_the_audit_chain_nor_for_each_other(gateway_pool, history) -> None:
    first, second = _user_history(history), _user_history(history)
    async with (gateway_pool.acquire() as auditing, gateway_pool.acquire() as one,
                gateway_pool.acquire() as other):
        appending = auditing.transaction()
        await appending.start()
        await audit_log.handle_batch(auditing, first + second, SystemClock())  # the chain's lock, held till commit
        async with asyncio.timeout(30):  # a guard: waiting for the lock would never end
            async with one.transaction(), other.transaction():
                await projector.handle_batch(one, first, SystemClock())
                await projector.handle_batch(other, second, SystemClock())  # `one` still open
            assert await _required(gateway_pool, first + second) == [True, True]
        assert await gateway_pool.fetchval("SELECT count(*) FROM audit_log") == 0, "the chain is still being appended"
        await appending.commit()

    assert await _chain(gateway_pool) == (4, [e.event_id for e in first + second])
    # Both consumers committed at once: the rows noting events not yet audited are left over, and a
    # replay clears them rather than waiting for events the log has.
    rebuilt = await replay.rebuild(gateway_pool)
    assert await gateway_pool.fetchval("SELECT count(*) FROM awaiting_audit") == 0
    assert await gateway_pool.fetch(f"SELECT * FROM {rebuilt.current['principals']} ORDER BY principal_id") == \
        await gateway_pool.fetch("SELECT * FROM principals_v1 ORDER BY principal_id")


async def test_events_delivered_again_to_the_audit_consumer_are_in_the_chain_once(gateway_pool, history) -> None:
    """Its group's first start takes over the read models' group's offsets, behind what the previous release
    appended; a rebalance or restart redelivers what was not committed."""
    events = history.random(random.Random(21), users=3, steps=20)
    async with gateway_pool.acquire() as conn:
        for start, end in ((0, 10), (5, 20), (0, len(events)), (len(events) - 3, len(events))):
            await _handle(conn, audit_log.handle_batch, events[start:end])

    assert await _chain(gateway_pool) == (len(events), [e.event_id for e in events])
