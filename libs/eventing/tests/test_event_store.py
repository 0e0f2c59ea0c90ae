"""The event store against a real PostgreSQL: versions, command ids, group commit, units of work."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.identity_events import UserCreated, UserUpdated
from mfaplane_eventing.event_store import Cause, CommandSeen, ConcurrencyConflict, EventStore, History


def created(user_id: uuid.UUID) -> UserCreated:
    return UserCreated(user_id=user_id, email=f"{user_id.hex[:8]}@example.com", name="Ada")


def updated(user_id: uuid.UUID, name: str) -> UserUpdated:
    return UserUpdated(user_id=user_id, email=f"{user_id.hex[:8]}@example.com", name=name)


def cause(command_id: uuid.UUID | None = None) -> Cause:
    return Cause(actor="admin:test", correlation_id=uuid.uuid4(), command_id=command_id)


async def test_append_then_load_returns_events_in_version_order(store: EventStore) -> None:
    user = uuid.uuid4()
    await store.append(str(user), 0, [created(user), updated(user, "Ada L")], cause())
    loaded = (await store.history(str(user))).events
    assert [(e.type, e.aggregate_version) for e in loaded] == [("UserCreated", 1), ("UserUpdated", 2)]
    assert loaded[1].body() == updated(user, "Ada L")


async def test_stale_expected_version_conflicts_and_writes_nothing(store: EventStore) -> None:
    user = uuid.uuid4()
    await store.append(str(user), 0, [created(user)], cause())
    with pytest.raises(ConcurrencyConflict):
        await store.append(str(user), 0, [updated(user, "late writer")], cause())
    assert [e.type for e in (await store.history(str(user))).events] == ["UserCreated"]
    outbox = await store.pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(user))
    assert outbox == 1


async def test_same_command_id_twice_returns_first_result_and_writes_nothing(store: EventStore) -> None:
    user, command_id = uuid.uuid4(), uuid.uuid4()
    first = await store.append(str(user), 0, [created(user)], cause(command_id))
    again = await store.append(str(user), 1, [updated(user, "retried")], cause(command_id))
    assert again.duplicate and not first.duplicate
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert len((await store.history(str(user))).events) == 1


async def test_a_command_id_seen_for_another_aggregate_answers_for_that_one(store: EventStore) -> None:
    """A create retried with a newly generated id, racing past the lookup of its command id."""
    first_id, retried_id, command_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = await store.append(str(first_id), 0, [created(first_id)], cause(command_id))
    again = await store.append(str(retried_id), 0, [created(retried_id)], cause(command_id))
    assert again.duplicate and again.events == first.events and again.version == 1
    assert (await store.history(str(retried_id))).events == []


async def test_a_conflicting_append_does_not_record_its_command_id(store: EventStore) -> None:
    user, command_id = uuid.uuid4(), uuid.uuid4()
    await store.append(str(user), 0, [created(user)], cause())
    with pytest.raises(ConcurrencyConflict):
        await store.append(str(user), 0, [updated(user, "stale")], cause(command_id))
    retried = await store.append(str(user), 1, [updated(user, "decided again")], cause(command_id))
    assert not retried.duplicate and retried.version == 2
    assert (await store.history(str(user))).events[-1].body() == updated(user, "decided again")


async def test_concurrent_twins_of_a_command_write_once_and_return_the_same_events(store: EventStore) -> None:
    user, command_id = uuid.uuid4(), uuid.uuid4()
    results = await asyncio.gather(*(store.append(str(user), 0, [created(user)], cause(command_id)) for _ in range(4)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len({tuple(e.event_id for e in r.events) for r in results}) == 1
    assert await store.pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(user)) == 1


async def test_the_outbox_row_is_the_stored_event(store: EventStore) -> None:
    user = uuid.uuid4()
    result = await store.append(str(user), 0, [created(user), updated(user, "B")], cause())
    values = await store.pool.fetch("SELECT value FROM outbox WHERE key = $1 ORDER BY position", str(user))
    stored = (await store.history(str(user))).events
    assert [Envelope.model_validate_json(r["value"]) for r in values] == result.events == stored


async def test_loading_for_a_command_gives_the_history_or_the_earlier_result(store: EventStore) -> None:
    user, command_id = uuid.uuid4(), uuid.uuid4()
    assert await store.load_for_command(str(user), command_id) == (History([]), None)
    first = await store.append(str(user), 0, [created(user)], cause())
    history, earlier = await store.load_for_command(str(user), command_id)
    assert (history, earlier) == (History(first.events), None)
    retried = await store.append(str(user), 1, [updated(user, "B")], cause(command_id))
    history, earlier = await store.load_for_command(str(user), command_id)
    assert history == History([]) and earlier.duplicate and earlier.events == retried.events and earlier.version == 2


async def test_every_append_has_its_outbox_row(store: EventStore) -> None:
    user = uuid.uuid4()
    result = await store.append(str(user), 0, [created(user), updated(user, "B")], cause())
    rows = await store.pool.fetch("SELECT topic, key FROM outbox WHERE key = $1 ORDER BY position", str(user))
    assert [(r["topic"], r["key"]) for r in rows] == [("mfaplane.identity.events", str(user))] * 2
    assert result.version == 2


async def test_concurrent_writers_on_one_aggregate_lose_no_update(store: EventStore) -> None:
    user = uuid.uuid4()
    await store.append(str(user), 0, [created(user)], cause())
    outcomes = await asyncio.gather(
        *(store.append(str(user), 1, [updated(user, f"n{i}")], cause()) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, ConcurrencyConflict) for o in outcomes if isinstance(o, Exception))
    assert len((await store.history(str(user))).events) == 2


async def test_concurrent_appends_are_committed_together_and_answered_each(store: EventStore) -> None:
    users = [uuid.uuid4() for _ in range(20)]
    results = await asyncio.gather(*(store.append(str(u), 0, [created(u)], cause()) for u in users))
    assert [r.events[0].aggregate_id for r in results] == [str(u) for u in users]
    assert all(r.version == 1 and not r.duplicate for r in results)
    transactions = await store.pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM events WHERE aggregate_id = ANY($1::text[])", [str(u) for u in users])
    assert transactions < len(users), "appends waiting for a statement slot go in one statement"


async def test_a_conflict_or_a_repeated_command_in_a_group_fails_only_its_own_append(store: EventStore) -> None:
    taken, repeated, command_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.append(str(taken), 0, [created(taken)], cause())
    first = await store.append(str(repeated), 0, [created(repeated)], cause(command_id))
    others = [uuid.uuid4() for _ in range(10)]
    appends = [store.append(str(u), 0, [created(u)], cause()) for u in others[:5]]
    appends += [store.append(str(taken), 0, [created(taken)], cause()),
                store.append(str(repeated), 1, [updated(repeated, "again")], cause(command_id))]
    appends += [store.append(str(u), 0, [created(u)], cause()) for u in others[5:]]
    outcomes = await asyncio.gather(*appends, return_exceptions=True)
    assert isinstance(outcomes[5], ConcurrencyConflict)
    assert outcomes[6].duplicate and outcomes[6].events == first.events
    assert all(not isinstance(o, Exception) and not o.duplicate for o in outcomes[:5] + outcomes[7:])
    assert [len((await store.history(str(u))).events) for u in [taken, repeated, *others]] == [1] * 12


async def test_a_repeated_command_alone_in_a_group_leaves_the_others_written_once(store: EventStore) -> None:
    repeated, command_id = uuid.uuid4(), uuid.uuid4()
    first = await store.append(str(repeated), 0, [created(repeated)], cause(command_id))
    others = [uuid.uuid4() for _ in range(10)]
    outcomes = await asyncio.gather(
        *(store.append(str(u), 0, [created(u)], cause()) for u in others[:5]),
        store.append(str(repeated), 1, [updated(repeated, "again")], cause(command_id)),
        *(store.append(str(u), 0, [created(u)], cause()) for u in others[5:]),
    )
    assert outcomes[5].duplicate and outcomes[5].events == first.events
    assert [o.duplicate for o in outcomes[:5] + outcomes[6:]] == [False] * 10
    assert [len((await store.history(str(u))).events) for u in [repeated, *others]] == [1] * 11


async def test_cancelled_callers_do_not_leave_the_others_of_their_group_unanswered(store: EventStore) -> None:
    """Callers are cancelled (requests timing out) while the statement writing their group waits."""
    users = [uuid.uuid4() for _ in range(30)]
    async with store.pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")  # appends wait for it
        tasks = [asyncio.create_task(store.append(str(u), 0, [created(u)], cause())) for u in users]
        await asyncio.sleep(0.2)
        for task in tasks[:2] + tasks[2::2]:  # the first callers, who might be writing for the others
            task.cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks[3::2]), timeout=10)
    assert [r.events[0].aggregate_id for r in done] == [str(u) for u in users[3::2]]


async def test_appending_to_many_aggregates_at_once_numbers_each_from_its_version(store: EventStore) -> None:
    known, new = uuid.uuid4(), uuid.uuid4()
    await store.append(str(known), 0, [created(known)], cause())
    async with store.pool.acquire() as conn, conn.transaction():
        versions = await store.versions([str(known), str(new)], conn)
        await store.append_each(conn, [(str(known), versions[str(known)], [updated(known, "B")], cause()),
                                       (str(new), versions[str(new)], [created(new), updated(new, "C")], cause())])
    assert versions == {str(known): 1, str(new): 0}
    assert [(e.type, e.aggregate_version) for e in (await store.history(str(known))).events] == [("UserCreated", 1),
                                                                                     ("UserUpdated", 2)]
    assert [(e.type, e.aggregate_version) for e in (await store.history(str(new))).events] == [("UserCreated", 1),
                                                                                   ("UserUpdated", 2)]
    keys = await store.pool.fetch("SELECT key FROM outbox WHERE key = ANY($1::text[])", [str(known), str(new)])
    assert sorted(r["key"] for r in keys) == sorted([str(known)] * 2 + [str(new)] * 2)


async def test_a_conflict_among_many_appends_writes_none_of_them(store: EventStore) -> None:
    fine, stale = uuid.uuid4(), uuid.uuid4()
    await store.append(str(stale), 0, [created(stale)], cause())
    with pytest.raises(ConcurrencyConflict):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.append_each(conn, [(str(fine), 0, [created(fine)], cause()),
                                           (str(stale), 0, [created(stale)], cause())])
    assert (await store.history(str(fine))).events == []


async def test_a_command_seen_before_among_many_appends_is_reported(store: EventStore) -> None:
    seen, fresh, command_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.append(str(seen), 0, [created(seen)], cause(command_id))
    with pytest.raises(CommandSeen):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.append_each(conn, [(str(fresh), 0, [created(fresh)], cause(uuid.uuid4())),
                                           (str(seen), 1, [updated(seen, "again")], cause(command_id))])
    assert (await store.history(str(fresh))).events == [] and len((await store.history(str(seen))).events) == 1


async def test_one_command_id_on_two_aggregates_is_not_applied_twice(store: EventStore) -> None:
    first, second, command_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with pytest.raises(CommandSeen):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.append_each(conn, [(str(first), 0, [created(first)], cause(command_id)),
                                           (str(second), 0, [created(second)], cause(command_id))])


def _appended_total() -> float:
    return REGISTRY.get_sample_value("mfaplane_events_appended_total") or 0.0


async def test_a_unit_of_work_counts_what_it_appended_once_it_commits_and_nothing_it_rolled_back(
        store: EventStore) -> None:
    kept, undone, rolled_back = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = _appended_total()
    async with store.unit_of_work() as work:
        await work.append(str(kept), 0, [created(kept), updated(kept, "B")], cause())
        with pytest.raises(ConcurrencyConflict):
            async with work.savepoint():
                await work.append(str(undone), 0, [created(undone)], cause())
                await work.append(str(undone), 0, [created(undone)], cause())  # the same version again
        assert _appended_total() == before, "nothing is counted before the commit"
    assert _appended_total() == before + 2
    assert len((await store.history(str(undone))).events) == 0

    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as work:
            await work.append(str(rolled_back), 0, [created(rolled_back)], cause())
            raise RuntimeError("the caller's own rows failed")
    assert _appended_total() == before + 2
    assert len((await store.history(str(rolled_back))).events) == 0


async def test_on_commit_hooks_run_after_the_commit_and_only_for_what_was_kept(store: EventStore) -> None:
    ran: list[str] = []
    kept = uuid.uuid4()
    async with store.unit_of_work() as work:
        await work.append(str(kept), 0, [created(kept)], cause())
        work.on_commit(lambda: ran.append("kept"))
        with pytest.raises(RuntimeError):
            async with work.savepoint():
                work.on_commit(lambda: ran.append("undone savepoint"))
                raise RuntimeError("this part failed")
        assert ran == [], "nothing runs before the commit"
    assert ran == ["kept"]

    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as work:
            work.on_commit(lambda: ran.append("rolled back"))
            raise RuntimeError("the caller's own rows failed")
    assert ran == ["kept"]


async def test_a_failing_on_commit_hook_leaves_the_commit_standing(store: EventStore) -> None:
    kept, ran = uuid.uuid4(), []
    async with store.unit_of_work() as work:
        await work.append(str(kept), 0, [created(kept)], cause())
        work.on_commit(lambda: 1 / 0)
        work.on_commit(lambda: ran.append("next"))
    assert ran == ["next"]
    assert len((await store.history(str(kept))).events) == 1
