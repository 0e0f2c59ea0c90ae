"""Which events make the service write key rows: `rows_needed` must name every one `record` writes for,
or a command producing it would append without its rows (no transaction, `record` never called)."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from mfaplane_contracts import mfa_events
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_mfa.enrollment import Decision
from mfaplane_mfa.key_material import ROW_EVENTS, KeyMaterial
from mfaplane_mfa.key_vault import KeyVault

OTHER_MFA_EVENTS = [t for t in EVENT_TYPES.values() if t.__module__ == mfa_events.__name__ and t not in ROW_EVENTS]


@pytest.mark.parametrize("event_type", OTHER_MFA_EVENTS, ids=lambda t: t.__name__)
async def test_record_writes_nothing_for_an_event_rows_needed_leaves_out(infra, event_type) -> None:
    keys = KeyMaterial(KeyVault({"k1": os.urandom(32)}, "k1"))
    sent: list[str] = []
    conn = await asyncpg.connect(infra.database_url)
    try:
        conn.add_query_logger(lambda query: sent.append(query.query))
        await keys.record(conn, "enrollment", [event_type.model_construct()], Decision(()))
        await asyncio.sleep(0.05)  # query loggers are called soon after the query, not during it
    finally:
        await conn.close()

    assert sent == []
