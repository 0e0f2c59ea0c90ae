"""The scheduler's consumer handler: keeps deadline_timers in step with enrollment events."""

from __future__ import annotations

import asyncpg

from mfaplane_contracts.envelope import Envelope
from mfaplane_scheduler.timers import plan


def handler(reminder_offsets_seconds: list[int]):
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        change = plan(envelope.body(), reminder_offsets_seconds, envelope.occurred_at)
        if change is None:
            return
        await conn.execute("DELETE FROM deadline_timers WHERE enrollment_id = $1", change.enrollment_id)
        await conn.executemany(
            "INSERT INTO deadline_timers (enrollment_id, timer, principal_id, scope, deadline, due_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [(change.enrollment_id, t.timer, change.principal_id, change.scope, t.deadline, t.due_at)
             for t in change.timers],
        )

    return handle
