"""Fires due timers: exactly one event per timer, however many scheduler replicas run.

Each batch claims due rows with FOR UPDATE SKIP LOCKED, so replicas take disjoint rows; in the same
transaction it appends the EnrollmentExpiring/EnrollmentExpired event (and its outbox row) and
deletes the timer. Either all of that commits or none of it, so a crash can neither lose nor repeat
a firing. Timers missed while the scheduler was down are simply due: they fire on start, oldest
first, each with its original due time in the event.
"""

from __future__ import annotations

import uuid

import asyncpg

from mfaplane_contracts.mfa_events import EnrollmentExpired, EnrollmentExpiring
from mfaplane_eventing import loops
from mfaplane_eventing.event_store import Cause, EventStore
from mfaplane_eventing.service import Runtime
from mfaplane_scheduler.timers import EXPIRY

ACTOR = "system:scheduler"


CLAIM_DUE = (
    "SELECT enrollment_id, timer, principal_id, scope, deadline, due_at FROM deadline_timers "
    "WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"
)


async def fire_due(store: EventStore, now, batch_size: int) -> int:
    async with store.pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(CLAIM_DUE, now, batch_size)
        for timer in due:
            await _fire(conn, store, timer)
        return len(due)


async def _fire(conn: asyncpg.Connection, store: EventStore, timer: asyncpg.Record) -> None:
    kind = EnrollmentExpired if timer["timer"] == EXPIRY else EnrollmentExpiring
    event = kind(principal_id=timer["principal_id"], scope=timer["scope"], deadline=timer["deadline"],
                 due_at=timer["due_at"])
    aggregate_id = timer_aggregate_id(timer["enrollment_id"])
    version = await store.version(aggregate_id, conn)
    await store.append(aggregate_id, version, [event], Cause(actor=ACTOR, correlation_id=uuid.uuid4()), conn=conn)
    await conn.execute("DELETE FROM deadline_timers WHERE enrollment_id = $1 AND timer = $2",
                       timer["enrollment_id"], timer["timer"])


def timer_aggregate_id(enrollment_id: str) -> str:
    """The deadline timers of an enrollment are their own aggregate, with their own versions: sharing
    the enrollment's id would mix two version sequences wherever versions are compared."""
    return f"deadline_timer:{enrollment_id}"


async def run(runtime: Runtime) -> None:
    settings = runtime.settings

    async def step() -> bool:
        return bool(await fire_due(runtime.store, runtime.clock.now(), settings.fire_batch_size))

    await loops.repeat("firing timers", step, settings.tick_seconds)
