"""Load, decide, append: the loop every command goes through, retried on a concurrent write."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_eventing.metrics import EVENTS_APPENDED
from mfaplane_eventing.event_store import AppendResult, Cause, ConcurrencyConflict, EventStore

S = TypeVar("S")
ATTEMPTS = 8
CONFLICT_BACKOFF_SECONDS = 0.02


async def execute(
    store: EventStore,
    aggregate_id: str,
    replay: Callable[[list[Envelope]], S],
    decide: Callable[[S], Sequence[EventPayload] | Awaitable[Sequence[EventPayload]]],
    cause: Cause,
    write_rows: Callable[[asyncpg.Connection, Sequence[EventPayload]], Awaitable[None]] | None = None,
) -> AppendResult:
    """Runs `decide` on the current state and appends its events with the loaded version.

    A retried command (same command id) returns the events it produced the first time without
    deciding again. When another writer got in first, the command is decided again on the new
    state, so it either still holds or is refused for the reason that now applies.
    `write_rows` writes the service's own rows (a password hash, an encrypted key) in the same
    transaction as the events. A decision with no events writes nothing at all.
    """
    if cause.command_id is not None and (earlier := await store.earlier_result(cause.command_id)) is not None:
        return earlier
    for attempts_left in range(ATTEMPTS - 1, -1, -1):
        history = await store.load(aggregate_id)
        events = decide(replay(history))
        if inspect.isawaitable(events):
            events = await events
        version = history[-1].aggregate_version if history else 0
        if not events:
            return AppendResult([], version, duplicate=False)
        try:
            async with store.pool.acquire() as conn, conn.transaction():
                result = await store.append(aggregate_id, version, events, cause, conn=conn)
                if write_rows is not None and not result.duplicate:
                    await write_rows(conn, events)
            EVENTS_APPENDED.inc(len(result.events) * (not result.duplicate))
            return result
        except ConcurrencyConflict:
            if not attempts_left:
                raise
            await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS))  # let the winner's readers pass
    raise ConcurrencyConflict(aggregate_id)  # only reached with ATTEMPTS == 0


def receipt(aggregate_id: str, result: AppendResult) -> CommandReceipt:
    return CommandReceipt(
        aggregate_id=aggregate_id,
        version=result.version,
        event_ids=[e.event_id for e in result.events],
        duplicate=result.duplicate,
    )
