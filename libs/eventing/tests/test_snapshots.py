"""Snapshots against a real PostgreSQL: taken every so many events by the command handler, loaded with
the tail after them, ignored under another key, and read by batches too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, make_dataclass

from mfaplane_contracts.identity_events import UserCreated, UserUpdated
from mfaplane_eventing.aggregate import Replayer
from mfaplane_eventing.command_handler import BatchItem, execute, execute_batch
from mfaplane_eventing.event_store import Cause, EventStore
from mfaplane_eventing.snapshots import Snapshot, Snapshots

EVERY = 3


@dataclass(frozen=True)
class Names:
    names: tuple[str, ...] = ()


def apply(state: Names, event) -> Names:
    return Names(state.names + (event.name,))


names = Replayer(apply, Names(), Snapshots(Names, every=EVERY))


def cause() -> Cause:
    return Cause(actor="admin:test", correlation_id=uuid.uuid4(), command_id=uuid.uuid4())


def rename(user: uuid.UUID, name: str):
    return lambda state: [UserUpdated(user_id=user, email=f"{user.hex[:8]}@example.com", name=name)]


async def renamed(store: EventStore, times: int) -> uuid.UUID:
    user = uuid.uuid4()
    await store.append(str(user), 0, [UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com", name="0")],
                       cause())
    for n in range(1, times + 1):
        await execute(store, str(user), names, rename(user, str(n)), cause())
    return user


async def test_a_snapshot_is_taken_every_so_many_events_and_loads_read_only_the_events_after_it(
        store: EventStore) -> None:
    user = await renamed(store, 7)  # versions 1 to 8: snapshots at 3 and 6

    history = await store.history(str(user), names.snapshot_key)

    assert history.snapshot is not None and history.snapshot.version == 6
    assert [e.aggregate_version for e in history.events] == [7, 8] and history.version == 8
    assert names(history) == names(await store.history(str(user))) == Names(tuple(str(n) for n in range(8)))


async def test_the_state_is_taken_from_the_snapshot(store: EventStore) -> None:
    user = await renamed(store, 2)  # versions 1 to 3: a snapshot at 3
    await store.pool.execute("UPDATE snapshots SET state = '{\"names\": [\"from the snapshot\"]}' "
                             "WHERE aggregate_id = $1", str(user))

    assert names(await store.history(str(user), names.snapshot_key)).names == ("from the snapshot",)
    await execute(store, str(user), names, rename(user, "next"), cause())
    assert names(await store.history(str(user), names.snapshot_key)).names == ("from the snapshot", "next")


async def test_each_code_reads_only_its_own_snapshots_and_another_code_s_go_when_a_day_old(
        store: EventStore) -> None:
    user = await renamed(store, 5)  # versions 1 to 6: snapshots at 3 and 6 under `names`' key
    changed = Replayer(apply, Names(), Snapshots(Names, version=2, every=EVERY))
    assert changed.snapshot_key != names.snapshot_key

    history = await store.history(str(user), changed.snapshot_key)
    assert history.snapshot is None and len(history.events) == 6

    await execute(store, str(user), changed, rename(user, "6"), cause())
    assert (await store.history(str(user), changed.snapshot_key)).snapshot.version == 7
    assert (await store.history(str(user), names.snapshot_key)).snapshot.version == 6  # both codes keep theirs

    await store.pool.execute("UPDATE snapshots SET taken_at = now() - interval '25 hours' "
                             "WHERE aggregate_id = $1 AND state_key = $2", str(user), names.snapshot_key)
    for n in (7, 8, 9):
        await execute(store, str(user), changed, rename(user, str(n)), cause())
    assert (await store.history(str(user), changed.snapshot_key)).snapshot.version == 10
    assert (await store.history(str(user), names.snapshot_key)).snapshot is None


async def test_a_snapshot_is_never_replaced_by_an_older_one(store: EventStore) -> None:
    user = await renamed(store, 7)  # a snapshot at 6
    await store.save_snapshot(str(user), names.snapshot_key, Snapshot(3, names.snapshots.dump(Names(("old",)))))

    assert names(await store.history(str(user), names.snapshot_key)) == Names(tuple(str(n) for n in range(8)))


@dataclass(frozen=True)
class Opaque:
    items: tuple[object, ...] = ()  # pydantic cannot write an object() as JSON


async def test_a_snapshot_that_cannot_be_made_leaves_the_command_applied(store: EventStore) -> None:
    user = await renamed(store, 0)
    opaque = Replayer(lambda state, _: Opaque(state.items + (object(),)), Opaque(), Snapshots(Opaque, every=1))

    result = await execute(store, str(user), opaque, rename(user, "1"), cause())

    assert (result.version, result.duplicate) == (2, False)
    assert len((await store.history(str(user))).events) == 2
    assert (await store.history(str(user), opaque.snapshot_key)).snapshot is None


def test_the_key_changes_with_the_state_s_schema_and_the_version() -> None:
    reshaped = make_dataclass("Names", [("names", list[int])], frozen=True)  # the same name, another field

    keys = {Snapshots(Names).key(apply), Snapshots(Names, version=2).key(apply), Snapshots(reshaped).key(apply)}
    assert len(keys) == 3 and Snapshots(Names).key(apply) == names.snapshot_key


async def test_a_batch_reads_snapshots_and_leaves_taking_them_to_single_commands(store: EventStore) -> None:
    long, fresh = await renamed(store, 4), await renamed(store, 0)

    histories = await store.load_many([str(long), str(fresh)], names.snapshot_key)
    assert (histories[str(long)].snapshot.version, len(histories[str(long)].events)) == (3, 2)
    assert (histories[str(fresh)].snapshot, len(histories[str(fresh)].events)) == (None, 1)

    await execute_batch(store, names, [BatchItem(str(long), rename(long, "5"), cause())])
    history = await store.history(str(long), names.snapshot_key)
    assert history.snapshot.version == 3 and names(history).names[-2:] == ("4", "5")
