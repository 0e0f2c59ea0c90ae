"""The audit log read in story order: each record's place, settled segments, resuming, and verification
of an export whose lines are not in chain order."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

import mfaplane_gateway
from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing import db
from mfaplane_eventing.service_keys import TrustedKeys
from mfaplane_gateway.audit import audit_log, audit_order, audit_verify
from mfaplane_gateway.audit.audit_history import states_at

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SETTLE = 10 * SECOND
NEVER = T0 + timedelta(days=3650)


async def store(pool: asyncpg.Pool, envelope: Envelope, stored_at: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await audit_log.append(conn, [envelope], stored_at)


def at(envelope: Envelope, occurred_at: datetime) -> Envelope:
    return envelope.model_copy(update={"occurred_at": occurred_at})


def created(history, occurred_at: datetime) -> Envelope:
    user = uuid.uuid4()
    return at(history.envelope(identity.UserCreated(user_id=user, email=f"{user.hex[:8]}@example.com", name="A")),
              occurred_at)


def required(history, principal: uuid.UUID, occurred_at: datetime) -> Envelope:
    return at(history.envelope(mfa.MFARequired(principal_id=principal, scope="user_portal", principal_kind="user",
                                               enrollment_days=None, deadline=None)), occurred_at)


def enrolled(history, principal: uuid.UUID, occurred_at: datetime) -> Envelope:
    return at(history.envelope(mfa.TOTPEnrolled(principal_id=principal, scope="user_portal", secret_id=uuid.uuid4(),
                                                time_step=1, recovery_codes_issued=10)), occurred_at)


async def read(pool: asyncpg.Pool, horizon: datetime, cursor: audit_order.Position | None = None,
               limit: int | None = None) -> list[dict]:
    parts = await audit_order.plan(pool, horizon, cursor)
    return [record async for record in audit_order.read(pool, parts, "true", [], limit)]


def ids(records: list[dict]) -> list[str]:
    return [record["envelope"]["event_id"] for record in records]


async def test_each_record_takes_its_place_in_the_story(gateway_pool, history) -> None:
    ada = uuid.uuid4()
    requirement = required(history, ada, T0 + 2 * SECOND)
    enrollment = enrolled(history, ada, T0 + SECOND)  # the next version, from a service whose clock is behind
    ahead = created(history, T0 + 10 * SECOND)  # from a service whose clock is ahead
    late = created(history, T0 + 1.5 * SECOND)  # stored last, though it happened before the others
    for envelope, stored_at in ((requirement, 3), (enrollment, 4), (ahead, 5), (late, 6)):
        await store(gateway_pool, envelope, T0 + stored_at * SECOND)

    places = {row["event_id"]: row["story_at"] for row in await gateway_pool.fetch(
        "SELECT event_id, story_at FROM audit_log")}
    assert places == {requirement.event_id: T0 + 2 * SECOND, enrollment.event_id: T0 + 2 * SECOND,
                      ahead.event_id: T0 + 5 * SECOND, late.event_id: T0 + 1.5 * SECOND}
    assert ids(await read(gateway_pool, NEVER)) == [str(e.event_id) for e in (late, requirement, enrollment, ahead)]


async def insert_as_before(pool: asyncpg.Pool, seq: int, envelope: Envelope) -> None:
    """An enrollment event as the release before story order stores it: no stored_at, no story_at (the
    hashes are not checked here)."""
    await pool.execute(
        "INSERT INTO audit_log (seq, event_id, type, aggregate_id, principal_id, actor, occurred_at, envelope, "
        "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'prev', 'hash')", seq, envelope.event_id,
        envelope.type, envelope.aggregate_id, uuid.UUID(envelope.payload["principal_id"]), envelope.actor,
        envelope.occurred_at, envelope.model_dump(mode="json"))


async def test_a_record_inserted_as_the_previous_release_does_gets_its_place(gateway_pool, history) -> None:
    """During an upgrade, or after a rollback, a gateway that knows neither stored_at nor story_at appends."""
    ada = uuid.uuid4()
    await store(gateway_pool, required(history, ada, T0 + 2 * SECOND), T0 + 3 * SECOND)
    await insert_as_before(gateway_pool, 2, enrolled(history, ada, T0 + SECOND))
    assert await gateway_pool.fetchval("SELECT story_at FROM audit_log WHERE seq = 2") == T0 + 2 * SECOND


async def test_the_migration_places_the_records_stored_before_it(infra, history, tmp_path: Path) -> None:
    migrations = Path(mfaplane_gateway.__file__).parent / "migrations"
    before = tmp_path / "mfaplane_gateway" / "migrations"  # the same migration names, without story order
    before.mkdir(parents=True)
    for path in migrations.glob("*.sql"):
        if path.name < "0011":
            shutil.copy(path, before)
    schema = f"gateway_unit_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, before])
    pool = await db.create_pool(infra.database_url, schema)
    try:
        ada, bob = uuid.uuid4(), uuid.uuid4()
        records = [required(history, ada, T0 + 2 * SECOND), enrolled(history, ada, T0 + SECOND),
                   required(history, bob, T0 + 1.5 * SECOND)]
        for seq, envelope in enumerate(records, 1):
            await insert_as_before(pool, seq, envelope)
        assert "mfaplane_gateway/0011_audit_story_order.sql" in await db.migrate(
            infra.database_url, schema, [db.EVENTING_MIGRATIONS, migrations])
        places = await pool.fetch("SELECT story_at FROM audit_log ORDER BY seq")
        assert [row["story_at"] for row in places] == [T0 + 2 * SECOND, T0 + 2 * SECOND, T0 + 1.5 * SECOND]
    finally:
        await pool.close()
        await drop_schema(infra.database_url, schema)


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def test_a_read_serves_settled_segments_that_nothing_stored_later_precedes(gateway_pool, history) -> None:
    # Places 10, 20, 30, then 15 (it crossed 30 in flight), then 50 seconds after T0.
    for place in (10, 20, 30, 15, 50):
        await store(gateway_pool, created(history, T0 + place * SECOND), T0 + 60 * SECOND)

    async def places(horizon: int) -> list[int]:
        return [(datetime.fromisoformat(r["story_at"]) - T0) // SECOND
                for r in await read(gateway_pool, T0 + horizon * SECOND)]

    assert await places(60) == [10, 15, 20, 30, 50]
    assert await places(40) == [10, 15, 20, 30]
    # 20 cannot be served before 15, and 15 is stored after 30, which has not settled.
    assert await places(25) == [10]
    assert await places(9) == []

    first = await read(gateway_pool, T0 + 25 * SECOND)
    second = await read(gateway_pool, T0 + 40 * SECOND, audit_order.Position.of_cursor(first[-1]["cursor"]))
    assert [r["seq"] for r in second] == [4, 2, 3]
    await store(gateway_pool, created(history, T0 + 12 * SECOND), T0 + 70 * SECOND)  # far later than it happened
    third = await read(gateway_pool, T0 + 60 * SECOND, audit_order.Position.of_cursor(second[-1]["cursor"]))
    assert [r["seq"] for r in third] == [6, 5], "what belongs before the records already read comes next"
    assert await places(60) == [10, 12, 15, 20, 30, 50], "a read from the start has it in its place"


async def test_after_a_record_resumes_in_story_order_as_readers_did_before_cursors(gateway_pool, history) -> None:
    for place in (10, 20, 15):
        await store(gateway_pool, created(history, T0 + place * SECOND), T0 + 60 * SECOND)

    async def seqs_after(seq: int) -> list[int]:
        parts = await audit_order.plan(gateway_pool, NEVER, after=seq)
        return [record["seq"] async for record in audit_order.read(gateway_pool, parts, "true", [], None)]

    assert await seqs_after(0) == [1, 3, 2]
    assert await seqs_after(3) == [2]
    assert await seqs_after(2) == []
    assert await seqs_after(99) == []


async def _resumed_reads(pool: asyncpg.Pool, history, rng: random.Random, longest_delay: float) -> list[dict]:
    """Events stored a second apart, each `delay` after it happened, and a reader paging through the log
    with cursors as they arrive, AUDIT_SETTLE_SECONDS behind the clock; at the end it reads what is left."""
    read_so_far: list[dict] = []
    cursor = None
    for n in range(1, 80):
        now = T0 + n * SECOND
        delay = rng.choice([0, 0.5, 2, 4]) if rng.random() > 0.1 else longest_delay
        await store(pool, created(history, now - delay * SECOND), now)
        if rng.random() < 0.4:
            page = await read(pool, now - SETTLE, cursor, limit=rng.randint(1, 6))
            from_the_start = sorted(record["seq"] for record in await read(pool, now - SETTLE))
            assert from_the_start == list(range(1, len(from_the_start) + 1)), "the chain up to some record"
            read_so_far += page
            cursor = audit_order.Position.of_cursor(page[-1]["cursor"]) if page else cursor
    while page := await read(pool, NEVER, cursor, limit=7):
        read_so_far += page
        cursor = audit_order.Position.of_cursor(page[-1]["cursor"])
    return read_so_far


async def test_a_reader_resuming_gets_each_record_once_in_the_order_of_a_read_from_the_start(gateway_pool,
                                                                                              history) -> None:
    resumed = await _resumed_reads(gateway_pool, history, random.Random(3), longest_delay=8)
    assert ids(resumed) == ids(await read(gateway_pool, NEVER))


async def test_a_reader_resuming_gets_each_record_once_even_after_events_later_than_the_horizon(gateway_pool,
                                                                                                history) -> None:
    resumed = await _resumed_reads(gateway_pool, history, random.Random(4), longest_delay=30)
    from_the_start = await read(gateway_pool, NEVER)
    assert sorted(ids(resumed)) == sorted(ids(from_the_start)) and len(set(ids(resumed))) == len(resumed)
    assert ids(resumed) != ids(from_the_start), "some arrived after their place was read"


async def test_a_state_at_a_past_moment_follows_each_aggregates_versions(gateway_pool, history) -> None:
    user = created(history, T0)
    ada = uuid.UUID(user.payload["user_id"])
    requirement = required(history, ada, T0 + 2 * SECOND)
    enrollment = enrolled(history, ada, T0 + SECOND)  # the next version, from a service whose clock is behind
    for envelope in (user, requirement, enrollment):
        await store(gateway_pool, envelope, T0 + 3 * SECOND)

    async def status(moment: datetime) -> MFAStatus:
        return (await anext(states_at(gateway_pool, moment, ada))).status(moment)

    assert await status(T0 + 1.5 * SECOND) == MFAStatus.NONE, "not set up before MFA was required"
    assert await status(T0 + 2 * SECOND) == MFAStatus.ACTIVE


async def test_an_export_in_story_order_verifies_and_a_missing_line_is_found(gateway_pool, history,
                                                                             tmp_path: Path) -> None:
    for place, stored_at in ((3, 3), (5, 5), (1, 6), (4, 7), (2, 8), (6, 9)):
        await store(gateway_pool, created(history, T0 + place * SECOND), T0 + stored_at * SECOND)
    records = await read(gateway_pool, NEVER)
    assert [r["seq"] for r in records] == [3, 5, 1, 4, 2, 6]
    export = tmp_path / "audit.ndjson"

    async def first_broken_link(lines: list[dict]) -> audit_log.BrokenLink | None:
        export.write_text("".join(json.dumps(line) + "\n" for line in lines))
        chain, _, broken = await audit_verify.verify(audit_verify._file_records(export), TrustedKeys({}))
        assert broken or chain.seq == 6
        return broken

    assert await first_broken_link(records) is None
    assert await first_broken_link(records[:2] + records[3:]) == audit_log.BrokenLink(1, "record 1 is missing "
                                                                                         "(found 2)")
    edited = json.loads(json.dumps(records))
    edited[3]["envelope"]["payload"]["name"] = "B"
    assert await first_broken_link(edited) == audit_log.BrokenLink(4, "content does not match its hash")
