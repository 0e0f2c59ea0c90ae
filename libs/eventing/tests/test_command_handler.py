"""A batch of commands against a real PostgreSQL: per-item outcomes, conflicts decided again, retries."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import REGISTRY

from mfaplane_contracts.identity_events import UserCreated, UserUpdated
from mfaplane_eventing.aggregate import Rejected, Replayer
from mfaplane_eventing.command_handler import BatchItem, execute, execute_batch
from mfaplane_eventing.event_store import AppendResult, Cause, EventStore

version_of = Replayer(lambda version, _: version + 1, 0)  # the state: how many events there are


def cause(command_id: uuid.UUID | None = None) -> Cause:
    return Cause(actor="admin:test", correlation_id=uuid.uuid4(), command_id=command_id or uuid.uuid4())


def rename(user: uuid.UUID, name: str, seen: list[int] | None = None):
    """A decision that renames the user, noting each version it was decided on."""

    def decide(version: int) -> list:
        if seen is not None:
            seen.append(version)
        return [UserUpdated(user_id=user, email=f"{user.hex[:8]}@example.com", name=name)]

    return decide


async def created(store: EventStore) -> uuid.UUID:
    user = uuid.uuid4()
    await store.append(str(user), 0, [UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com", name="A")],
                       cause())
    return user


async def test_one_refused_item_leaves_the_others_applied(store: EventStore) -> None:
    users = [await created(store) for _ in range(3)]

    def refuse(version: int) -> list:
        raise Rejected("not_allowed", "refused for the test")

    items = [BatchItem(str(users[0]), rename(users[0], "B"), cause()),
             BatchItem(str(users[1]), refuse, cause()),
             BatchItem(str(users[2]), rename(users[2], "C"), cause())]
    outcomes = await execute_batch(store, version_of, items)

    assert isinstance(outcomes[1], Rejected) and outcomes[1].code == "not_allowed"
    assert [(o.version, o.duplicate) for o in (outcomes[0], outcomes[2])] == [(2, False), (2, False)]
    histories = await store.load_many([str(u) for u in users])
    assert [len(histories[str(u)].events) for u in users] == [2, 1, 2]
    assert histories[str(users[2])].events[-1].body().name == "C"


async def test_an_item_whose_aggregate_changed_is_decided_again_without_failing_the_batch(store: EventStore) -> None:
    raced, other = await created(store), await created(store)
    seen: list[int] = []

    async def decide_while_another_writer_gets_in(version: int) -> list:
        if not seen:  # the first time only: another writer appends to the same user meanwhile
            await store.append(str(raced), version, rename(raced, "the other writer")(version), cause())
        return rename(raced, "the batch", seen)(version)

    outcomes = await execute_batch(store, version_of, [
        BatchItem(str(raced), decide_while_another_writer_gets_in, cause()),
        BatchItem(str(other), rename(other, "B"), cause()),
    ])

    assert seen == [1, 2], "decided on the loaded version, then again on the other writer's"
    assert [o.version for o in outcomes] == [3, 2]
    names = [e.body().name for e in (await store.history(str(raced))).events]
    assert names == ["A", "the other writer", "the batch"]


async def test_a_retried_batch_returns_the_first_results_and_decides_nothing(store: EventStore) -> None:
    users = [await created(store) for _ in range(2)]
    causes = [cause(), cause()]
    first = await execute_batch(store, version_of, [BatchItem(str(u), rename(u, "B"), c)
                                                    for u, c in zip(users, causes, strict=True)])
    decided_again: list[int] = []
    again = await execute_batch(store, version_of, [BatchItem(str(u), rename(u, "retried", decided_again), c)
                                                    for u, c in zip(users, causes, strict=True)])

    assert decided_again == []
    assert all(isinstance(o, AppendResult) and o.duplicate for o in again)
    assert [o.events[0].event_id for o in again] == [o.events[0].event_id for o in first]
    assert [len((await store.history(str(u))).events) for u in users] == [2, 2]


last_name = Replayer(lambda _, event: event.name, "")


def rename_unless_named(user: uuid.UUID, name: str):
    """A decision that holds at most once: nothing to do when the user already has the name."""
    return lambda current: [] if current == name else rename(user, name)(0)


async def test_one_command_sent_to_many_replicas_at_once_is_applied_once_and_told_so(store: EventStore) -> None:
    user, retried = await created(store), cause()
    results = await asyncio.gather(*(
        execute(store, str(user), last_name, rename_unless_named(user, "B"), retried) for _ in range(8)))
    batches = await asyncio.gather(*(
        execute_batch(store, last_name, [BatchItem(str(user), rename_unless_named(user, "B"), retried)])
        for _ in range(4)))

    answers = results + [outcome for batch in batches for outcome in batch]
    assert sorted(r.duplicate for r in answers) == [False] + [True] * 11
    assert {tuple(e.event_id for e in r.events) for r in answers} == {tuple(e.event_id for e in results[0].events)}
    assert [e.body().name for e in (await store.history(str(user))).events] == ["A", "B"]


async def test_the_appended_events_metric_counts_each_event_once(store: EventStore) -> None:
    user = await created(store)
    appended = REGISTRY.get_sample_value("mfaplane_events_appended_total")

    async def no_rows(conn, events) -> None:
        return None

    await execute(store, str(user), version_of, rename(user, "B"), cause())  # the one-statement path
    await execute(store, str(user), version_of, rename(user, "C"), cause(), write_rows=no_rows)  # a transaction
    await execute_batch(store, version_of, [BatchItem(str(user), rename(user, "D"), cause())])

    assert REGISTRY.get_sample_value("mfaplane_events_appended_total") - appended == 3


async def test_the_services_rows_are_written_only_for_the_events_that_need_them(store: EventStore) -> None:
    user = await created(store)
    written: list[tuple[str, bool]] = []

    async def write_rows(conn, events) -> None:
        written.append((events[0].name, conn.is_in_transaction()))

    def rows_needed(events) -> bool:
        return events[0].name == "keyed"

    for name in ("plain", "keyed"):
        await execute(store, str(user), version_of, rename(user, name), cause(), write_rows, rows_needed)

    assert written == [("keyed", True)]  # with the events, in their transaction
    assert [e.body().name for e in (await store.history(str(user))).events] == ["A", "plain", "keyed"]
