"""Load, decide, append: the loop every command goes through, retried on a concurrent write.

`execute` runs one command; `execute_batch` runs many (a bulk action's) with a few queries and one
transaction per attempt instead of several round trips and a commit per command. Both load from the
aggregate's snapshot when it has one; `execute` saves one when it is due (see snapshots.py), a batch
leaves that to the next single command.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.envelope import EventPayload
from mfaplane_eventing.aggregate import Rejected, Replayer
from mfaplane_eventing.event_store import (
    AppendResult,
    Cause,
    CommandSeen,
    ConcurrencyConflict,
    EventStore,
    History,
    UnitOfWork,
)

log = logging.getLogger(__name__)
S = TypeVar("S")
ATTEMPTS = 8
CONFLICT_BACKOFF_SECONDS = 0.02
Decide = Callable[[S], Sequence[EventPayload] | Awaitable[Sequence[EventPayload]]]
WriteRows = Callable[[asyncpg.Connection, Sequence[EventPayload]], Awaitable[None]]
Outcomes = dict[int, "AppendResult | Rejected | ConcurrencyConflict"]  # by the item's index in its batch
Decided = list[tuple[int, int, Sequence[EventPayload]]]  # (item, loaded version, events) to append


async def execute(
    store: EventStore,
    aggregate_id: str,
    replay: Replayer[S],
    decide: Decide[S],
    cause: Cause,
    write_rows: WriteRows | None = None,
    rows_needed: Callable[[Sequence[EventPayload]], bool] | None = None,
) -> AppendResult:
    """Runs `decide` on the current state and appends its events with the loaded version.

    A retried command (same command id) returns the events it produced the first time without
    deciding again. When another writer got in first, the command is decided again on the new
    state, so it either still holds or is refused for the reason that now applies.
    `write_rows` writes the service's own rows (a password hash, an encrypted key) in the same
    transaction as the events; `rows_needed`, if given, says which events need them, and events
    that need none are appended on their own (one statement, group-committed). A decision with no
    events writes nothing at all. After the append, a snapshot is saved if one is due.
    """
    for attempts_left in range(ATTEMPTS - 1, -1, -1):
        # The command id is looked up with the history (one snapshot) and on every attempt: the same command
        # may be running on another replica (a client's retry), and deciding on its result would answer
        # "nothing to do" instead.
        history, earlier = await store.load_for_command(aggregate_id, cause.command_id, replay.snapshot_key)
        if earlier is not None:
            return earlier
        state = replay(history)
        events = await _decide(decide, state)
        if not events:
            return AppendResult([], history.version, duplicate=False)
        try:
            result = await _append(store, aggregate_id, history.version, events, cause, write_rows, rows_needed)
        except ConcurrencyConflict:
            if not attempts_left:
                raise
            await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS))  # let the winner's readers pass
            continue
        if not result.duplicate:
            await _save_snapshot(store, replay, aggregate_id, history, state, events, result.version)
        return result
    raise ConcurrencyConflict(aggregate_id)  # only reached with ATTEMPTS == 0


async def _append(store: EventStore, aggregate_id: str, version: int, events: Sequence[EventPayload], cause: Cause,
                  write_rows: WriteRows | None, rows_needed: Callable[[Sequence[EventPayload]], bool] | None
                  ) -> AppendResult:
    if write_rows is None or (rows_needed is not None and not rows_needed(events)):
        return await store.append(aggregate_id, version, events, cause)  # one statement, no BEGIN
    async with store.unit_of_work() as work:
        return await _append_on(work, aggregate_id, version, events, cause, write_rows)


async def _save_snapshot(store: EventStore, replay: Replayer[S], aggregate_id: str, history: History, state: S,
                         events: Sequence[EventPayload], version: int) -> None:
    """Saves a snapshot at `version` if one is due. The command has committed by now, and its answer
    must stand whatever happens here: a snapshot not made or not saved is left to a later command."""
    try:
        snapshot = replay.snapshot_after(history, state, events, version)
        if snapshot is not None and replay.snapshot_key is not None:
            await store.save_snapshot(aggregate_id, replay.snapshot_key, snapshot)
    except Exception as error:  # noqa: BLE001 - only a shortcut is lost
        log.warning("snapshot not saved", extra={"aggregate_id": aggregate_id, "error": type(error).__name__})


async def _decide(decide: Decide[S], state: S) -> Sequence[EventPayload]:
    events = decide(state)
    return await events if inspect.isawaitable(events) else events


async def _append_on(work: UnitOfWork, aggregate_id: str, version: int, events: Sequence[EventPayload],
                     cause: Cause, write_rows: WriteRows | None) -> AppendResult:
    """Appends in the unit of work, with the service's own rows unless the command was a duplicate."""
    result = await work.append(aggregate_id, version, events, cause)
    if write_rows is not None and not result.duplicate:
        await write_rows(work.conn, events)
    return result


@dataclass(frozen=True)
class BatchItem(Generic[S]):
    """One command of a batch: what `execute` takes, for one aggregate."""

    aggregate_id: str
    decide: Decide[S]
    cause: Cause
    write_rows: WriteRows | None = None


async def execute_batch(
    store: EventStore, replay: Replayer[S], items: Sequence[BatchItem[S]],
) -> list[AppendResult | Rejected | ConcurrencyConflict]:
    """Runs many commands as `execute` runs one, each on its own aggregate, with per-item outcomes.

    The histories are loaded in one query and the decisions appended in one transaction: all with
    one statement when nothing got in the way, else each item in its own savepoint with its loaded
    version. An item whose aggregate changed meanwhile is decided again on the new state (up to
    ATTEMPTS times, then its outcome is the conflict), an item whose `decide` raises `Rejected` has
    that refusal as its outcome, and neither touches the other items. A retried command id returns
    its first result. Outcomes come in the items' order.
    """
    outcomes: Outcomes = {}
    pending = list(range(len(items)))
    for attempts_left in range(ATTEMPTS - 1, -1, -1):
        histories = await store.load_many([items[i].aggregate_id for i in pending], replay.snapshot_key)
        outcomes.update(await _earlier_results(store, items, pending))  # after the load: see `execute`
        pending = [i for i in pending if i not in outcomes]
        if not pending:
            break
        decided = await _decide_all(replay, items, pending, histories, outcomes)
        pending = await _append_all(store, items, decided, outcomes)
        if pending and attempts_left:
            await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS))
    for i in pending:
        outcomes[i] = ConcurrencyConflict(items[i].aggregate_id)
    return [outcomes[i] for i in range(len(items))]


async def _earlier_results(store: EventStore, items: Sequence[BatchItem[Any]], pending: list[int]) -> Outcomes:
    ids = {i: command_id for i in pending if (command_id := items[i].cause.command_id)}
    earlier = await store.earlier_results(list(ids.values()))
    return {i: earlier[command_id] for i, command_id in ids.items() if command_id in earlier}


async def _decide_all(replay: Replayer[S], items: Sequence[BatchItem[S]], pending: list[int],
                      histories: dict[str, History], outcomes: Outcomes) -> Decided:
    """(item, loaded version, events) of every pending item that has events to append."""
    decided: Decided = []
    for i in pending:
        history = histories[items[i].aggregate_id]
        try:
            events = await _decide(items[i].decide, replay(history))
        except Rejected as refusal:
            outcomes[i] = refusal
            continue
        if events:
            decided.append((i, history.version, events))
        else:
            outcomes[i] = AppendResult([], history.version, duplicate=False)
    return decided


async def _append_all(store: EventStore, items: Sequence[BatchItem[Any]], decided: Decided,
                      outcomes: Outcomes) -> list[int]:
    """Appends every decision in one transaction; returns the items that met a concurrent write."""
    conflicted: list[int] = []
    if not decided:
        return conflicted
    try:
        appended = await _append_together(store, items, decided)
    except (ConcurrencyConflict, CommandSeen):
        appended, conflicted = await _append_one_by_one(store, items, decided)
    outcomes.update(appended)
    return conflicted


async def _append_together(store: EventStore, items: Sequence[BatchItem[Any]],
                           decided: Decided) -> dict[int, AppendResult]:
    """The common case, with one statement for every item's events; a conflict or a command id seen
    before anywhere undoes it all (the caller then goes one by one)."""
    async with store.unit_of_work() as work:
        appends = [(items[i].aggregate_id, version, events, items[i].cause) for i, version, events in decided]
        written = await work.append_each(appends)
        for i, _, events in decided:
            write_rows = items[i].write_rows
            if write_rows is not None:
                await write_rows(work.conn, events)
    return {i: AppendResult(envelopes, version + len(envelopes), duplicate=False)
            for (i, version, _), envelopes in zip(decided, written, strict=True)}


async def _append_one_by_one(store: EventStore, items: Sequence[BatchItem[Any]],
                             decided: Decided) -> tuple[dict[int, AppendResult], list[int]]:
    """Each item in its own savepoint: a conflict undoes that item alone, a repeated command id gets
    its first result. The items appended, and those that met a concurrent write."""
    conflicted, appended = [], {}
    async with store.unit_of_work() as work:
        for i, version, events in decided:
            item = items[i]
            try:
                async with work.savepoint():
                    appended[i] = await _append_on(work, item.aggregate_id, version, events, item.cause,
                                                   item.write_rows)
            except ConcurrencyConflict:
                conflicted.append(i)
    return appended, conflicted


def receipt(aggregate_id: str, result: AppendResult) -> CommandReceipt:
    """What a command did, for `aggregate_id`, or for the aggregate its events went to: a create sent
    again with the same command id may carry a newly generated id, and must name the one it made."""
    return CommandReceipt(
        aggregate_id=result.events[0].aggregate_id if result.events else aggregate_id,
        version=result.version,
        event_ids=[e.event_id for e in result.events],
        duplicate=result.duplicate,
    )
