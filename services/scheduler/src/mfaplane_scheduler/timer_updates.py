"""The scheduler's consumer handler: keeps deadline_timers in step with enrollment events."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from mfaplane_contracts.envelope import Envelope
from mfaplane_eventing.consumer import BatchHandler
from mfaplane_scheduler.timers import plan


def batch_handler(reminder_offsets_seconds: list[int]) -> BatchHandler:
    async def handle_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        # Each change replaces all of its enrollment's timers, so within a batch the last one counts.
        latest = {}
        for envelope in envelopes:
            change = plan(envelope.body(), reminder_offsets_seconds, envelope.occurred_at, envelope.aggregate_version)
            if change is not None:
                latest[change.enrollment_id] = change
        if not latest:
            return
        await conn.execute("DELETE FROM deadline_timers WHERE enrollment_id = ANY($1::text[])", list(latest))
        await conn.executemany(
            "INSERT INTO deadline_timers (enrollment_id, timer, principal_id, scope, deadline, due_at, "
            "enrollment_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(change.enrollment_id, t.timer, change.principal_id, change.scope, t.deadline, t.due_at,
              change.enrollment_version)
             for change in latest.values() for t in change.timers],
        )

    return handle_batch

