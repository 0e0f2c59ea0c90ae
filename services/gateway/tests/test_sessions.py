"""Sessions against a real PostgreSQL: expired ones are deleted in batches, live ones are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mfaplane_gateway.sessions import Tokens, delete_expired

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=8)


async def test_expired_sessions_are_deleted_in_batches_and_live_ones_still_work(gateway_pool) -> None:
    tokens = Tokens("a signing key for the test", 300, int(TTL.total_seconds()))
    principal = uuid.uuid4()
    for minute in range(3):
        await tokens.open_session(gateway_pool, principal, "user", T0 + timedelta(minutes=minute))
    live = await tokens.open_session(gateway_pool, principal, "user", T0 + timedelta(hours=2))
    now = T0 + TTL + timedelta(hours=1)

    assert await delete_expired(gateway_pool, now, batch=2) is True  # a full batch: maybe more
    assert await delete_expired(gateway_pool, now, batch=2) is False
    assert await delete_expired(gateway_pool, now, batch=2) is False

    assert await gateway_pool.fetchval("SELECT count(*) FROM sessions") == 1
    assert (await tokens.session(gateway_pool, live, "user", now))["principal_id"] == principal
