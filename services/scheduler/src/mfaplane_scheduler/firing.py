"""Fires due timers: exactly one event per timer, however many scheduler replicas run.

Each batch claims and deletes due rows with FOR UPDATE SKIP LOCKED, so replicas take disjoint rows;
in the same transaction it appends their EnrollmentExpiring/EnrollmentExpired events (and outbox
rows), all with one statement. Either all of that commits or none of it, so a crash can neither lose nor repeat
a firing. Timers missed while the scheduler was down are simply due: they fire on start, oldest
first, each with its original due time in the event.
"""

from __future__ import annotations

import uuid

import asyncpg

from mfaplane_chassis.service import Runtime
from mfaplane_contracts.mfa_events import EnrollmentExpired, EnrollmentExpiring
from mfaplane_eventing import loops
from mfaplane_eventing.event_store import Cause, ConcurrencyConflict, EventStore
from mfaplane_scheduler.timers import EXPIRY

ACTOR = "system:scheduler"
# Claiming a due timer deletes it: the transaction that appends its event commits both or neither.
TAKE_DUE = (
    "DELETE FROM deadline_timers WHERE (enrollment_id, timer) IN ("
    "  SELECT enrollment_id, timer FROM deadline_timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2"
    "  FOR UPDATE SKIP LOCKED"
    ") RETURNING enrollment_id, timer, principal_id, scope, deadline, due_at, enrollment_version"
)


async def fire_due(store: EventStore, now, batch_size: int) -> int:
    """Fires up to `batch_size` due timers, oldest first, with one statement for all their events."""
    async with store.unit_of_work() as work:
        due = sorted(await work.conn.fetch(TAKE_DUE, now, batch_size), key=lambda timer: timer["due_at"])
        if not due:
            return 0
        aggregate_ids = [timer_aggregate_id(timer["enrollment_id"]) for timer in due]
        next_version = await store.versions(aggregate_ids, work.conn)
        appends = []
        # An enrollment's reminder and expiry may be due together: numbered one after the other.
        for aggregate_id, timer in zip(aggregate_ids, due, strict=True):
            appends.append((aggregate_id, next_version[aggregate_id], [_event(timer)],
                            Cause(actor=ACTOR, correlation_id=uuid.uuid4())))
            next_version[aggregate_id] += 1
        await work.append_each(appends)
    return len(due)


def _event(timer: asyncpg.Record) -> EnrollmentExpired | EnrollmentExpiring:
    kind = EnrollmentExpired if timer["timer"] == EXPIRY else EnrollmentExpiring
    return kind(principal_id=timer["principal_id"], scope=timer["scope"], deadline=timer["deadline"],
                due_at=timer["due_at"], enrollment_version=timer["enrollment_version"])


def timer_aggregate_id(enrollment_id: str) -> str:
    """The deadline timers of an enrollment are their own aggregate, with their own versions: sharing
    the enrollment's id would mix two version sequences wherever versions are compared."""
    return f"deadline_timer:{enrollment_id}"


async def run(runtime: Runtime) -> None:
    settings = runtime.settings

    async def step() -> bool:
        try:
            return bool(await fire_due(runtime.store, runtime.clock.now(), settings.fire_batch_size))
        except ConcurrencyConflict:
            # Another replica took an enrollment's other timer due at the same time: the batch rolled
            # back (its timers are due again), and the next attempt reads the new versions.
            return True

    await loops.repeat("firing timers", step, settings.tick_seconds)
