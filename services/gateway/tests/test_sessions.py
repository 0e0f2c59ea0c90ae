"""Sessions against a real PostgreSQL: expired ones are deleted in batches, live ones are kept; a password
change ends every other session of its principal, whether the gateway or the projector gets there first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts.identity_events import UserPasswordChanged
from mfaplane_contracts.mfa_events import MFAReset
from mfaplane_eventing.aggregate import Rejected
from mfaplane_gateway.edge.sessions import Tokens, delete_expired, end_other_sessions

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=8)


async def test_expired_sessions_are_deleted_in_batches_and_live_ones_still_work(gateway_pool) -> None:
    tokens = Tokens("a signing key for the test", 300, int(TTL.total_seconds()), admin_code_required=True)
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


async def _sessions(pool, tokens: Tokens, principal: uuid.UUID) -> tuple[str, uuid.UUID, str]:
    """The session that changes the password (token and id) and another one, opened before the change."""
    kept, other = [await tokens.open_session(pool, principal, "user", T0 - timedelta(hours=1)) for _ in range(2)]
    return kept, (await tokens.session(pool, kept, "user", T0))["session_id"], other


def _live(pool, tokens: Tokens, token: str):
    return tokens.session(pool, token, "user", T0 + timedelta(hours=1))


@pytest.mark.parametrize("projector_first", [False, True])
async def test_the_session_that_changed_the_password_stays_whoever_ends_the_others_first(
        gateway_pool, history, handle, projector_first: bool) -> None:
    tokens = Tokens("a signing key for the test", 300, int(TTL.total_seconds()), admin_code_required=True)
    principal = uuid.uuid4()
    kept, kept_id, other = await _sessions(gateway_pool, tokens, principal)
    changed = history.envelope(UserPasswordChanged(user_id=principal))

    if projector_first:
        await handle(gateway_pool, [changed])
    await end_other_sessions(gateway_pool, principal, kept_id, changed.occurred_at)
    if not projector_first:
        await handle(gateway_pool, [changed])

    assert (await _live(gateway_pool, tokens, kept))["session_id"] == kept_id
    with pytest.raises(Rejected):
        await _live(gateway_pool, tokens, other)


async def test_a_later_cutoff_ends_the_session_that_changed_the_password(gateway_pool, history, handle) -> None:
    tokens = Tokens("a signing key for the test", 300, int(TTL.total_seconds()), admin_code_required=True)
    principal = uuid.uuid4()
    kept, kept_id, _ = await _sessions(gateway_pool, tokens, principal)
    changed = history.envelope(UserPasswordChanged(user_id=principal))
    reset = history.envelope(MFAReset(principal_id=principal, scope="user_portal", enrollment_days=7,
                                      deadline=T0 + timedelta(days=7), shredded_secret_id=None))

    await handle(gateway_pool, [changed, reset])
    await end_other_sessions(gateway_pool, principal, kept_id, changed.occurred_at)
    with pytest.raises(Rejected):
        await _live(gateway_pool, tokens, kept)
