"""The event store: append with an expected version and a command id, load, republish.

Appending writes the command id, the events and their outbox rows in one statement (one
transaction), so an event is stored if and only if it will be published. Nothing reads the store's
global order: each service's consumers read the topics, which the outbox relay fills (outbox_relay.py).

Group commit (`append` without a connection). Most of a one-event append's cost is not its rows but
the round trip and the commit's WAL flush, paid once per statement. So an append is queued, and a
writer task (at most FLUSHES_AT_ONCE run, each started by an append that found fewer) writes
everything queued by then with one statement, one commit, and goes on while more is queued.
Nobody waits for a timer: a lone append is written at once, and the groups grow only with the
concurrency (what that gains: docs/performance.md, event store append). Each append stays
all-or-nothing and is answered only after its commit. If any append of a group conflicts or repeats
a command id, the statement writes nothing and each append of the group is then written on its own,
as if it had come alone, so each caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_eventing.clock import Clock
from mfaplane_eventing.metrics import EVENTS_APPENDED
from mfaplane_eventing.snapshots import Snapshot

log = logging.getLogger(__name__)
FLUSHES_AT_ONCE = 2  # group-commit writer tasks, each with a statement in flight (see the module docstring)
Append = tuple[str, int, Sequence[EventPayload], "Cause"]  # aggregate id, expected version, events, cause


class ConcurrencyConflict(Exception):
    """Another writer appended to the aggregate since it was loaded."""


class CommandSeen(Exception):
    """A command id among several appended together was recorded before."""


@dataclass(frozen=True)
class Cause:
    """Who asked and why: recorded on every event a command produces."""

    actor: str
    correlation_id: uuid.UUID
    command_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AppendResult:
    events: list[Envelope]
    version: int  # the aggregate's version after the append
    duplicate: bool  # the command id was seen before: nothing was written


_COLUMNS = (
    "event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, occurred_at, "
    "correlation_id, causation_id, command_id, actor, payload"
)


# The command ids, the events and their outbox rows in one statement (so one round trip, atomic even
# without a transaction), for one aggregate or many. The events of a command id seen before are not
# inserted (with one command, the result is then 0 rows), nor those of a command id given to a
# second aggregate in the same statement: a command belongs to one aggregate.
_APPEND = (
    "WITH new AS ("
    "  SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::uuid[],"
    "                       $8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::text[], $13::bytea[])"
    "  AS e(event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, command_id,"
    "       correlation_id, causation_id, actor, topic, payload, value)"
    "), command AS ("
    "  INSERT INTO commands (command_id, aggregate_id) SELECT DISTINCT command_id, aggregate_id FROM new"
    "  WHERE command_id IS NOT NULL ON CONFLICT DO NOTHING RETURNING command_id, aggregate_id"
    "), event AS ("
    f"  INSERT INTO events ({_COLUMNS}, topic)"
    "  SELECT event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, $14::timestamptz,"
    "         correlation_id, causation_id, command_id, actor, payload::jsonb, topic FROM new"
    "  WHERE command_id IS NULL OR (command_id, aggregate_id) IN (SELECT command_id, aggregate_id FROM command)"
    "  RETURNING position, event_id"
    ") "
    "INSERT INTO outbox (position, topic, key, value) SELECT event.position, new.topic, new.aggregate_id, new.value "
    "FROM event JOIN new USING (event_id)"
)


def _load(aggregates: str) -> str:
    """The history of each aggregate `a` of `aggregates` (its snapshot under the key $3, if any, and the
    events after it), unless the command id $2 was recorded before: then one row naming the aggregate
    it was recorded for. The snapshot's state comes as text, decoded once rather than on each row."""
    return (
        "SELECT a.aggregate_id AS loaded_for, c.aggregate_id AS recorded_for, s.aggregate_version AS snapshot_version, "
        "s.state::text AS snapshot_state, " + ", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(",")) + " "
        f"FROM {aggregates} LEFT JOIN commands c ON c.command_id = $2 "
        "LEFT JOIN snapshots s ON s.aggregate_id = a.aggregate_id AND s.state_key = $3 AND c.command_id IS NULL "
        "LEFT JOIN events e ON e.aggregate_id = a.aggregate_id AND c.command_id IS NULL "
        "AND e.aggregate_version > coalesce(s.aggregate_version, 0) "
        "ORDER BY a.aggregate_id, e.aggregate_version"
    )


# One aggregate ($1) gets a generic plan, made once per connection. An array of one would get a custom
# plan at every execution, dearer per command (docs/performance.md, sign-in).
_LOAD_ONE = _load("(SELECT $1::text AS aggregate_id) AS a")
_LOAD_MANY = _load("unnest($1::text[]) AS a(aggregate_id)")


@dataclass(frozen=True)
class History:
    """An aggregate's stored past as loaded: its latest snapshot (if one was usable) and the events after it."""

    events: list[Envelope]
    snapshot: Snapshot | None = None

    @property
    def snapshot_version(self) -> int:
        return self.snapshot.version if self.snapshot else 0

    @property
    def version(self) -> int:
        return self.events[-1].aggregate_version if self.events else self.snapshot_version


def _history(rows: Sequence[asyncpg.Record]) -> History:
    """One aggregate's rows of a `_load` query."""
    first = rows[0]
    snapshot = (Snapshot(first["snapshot_version"], json.loads(first["snapshot_state"]))
                if first["snapshot_version"] is not None else None)
    return History([_envelope(row) for row in rows if row["event_id"] is not None], snapshot)


def _settle(answer: asyncio.Future[Any], result: AppendResult | None = None, error: Exception | None = None) -> None:
    """Answers an append's caller, unless it was cancelled (its answer then is too)."""
    if answer.done():
        return
    if error is None:
        answer.set_result(result)
    else:
        answer.set_exception(error)


# Stored events are unsigned: the relay signs what it publishes (event_signing.py).
_STORED_FIELDS = tuple(name for name in Envelope.model_fields if name not in ("key_id", "signature", "proof"))


def _envelope(row: asyncpg.Record) -> Envelope:
    return Envelope.model_validate({key: row[key] for key in _STORED_FIELDS})


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


class UnitOfWork:
    """One transaction on the store's database: the appends made through it, with the caller's own
    rows on `conn`, commit or roll back together. What must happen only once they have committed (a
    metric, a wake-up, a message to another process) is registered with `on_commit`."""

    def __init__(self, store: EventStore, conn: asyncpg.Connection) -> None:
        self.store = store
        self.conn = conn
        self._on_commit: list[Callable[[], object]] = []

    def on_commit(self, hook: Callable[[], object]) -> None:
        """Runs `hook` after the transaction commits: never if it rolls back, nor if it was registered in a
        savepoint that was undone."""
        self._on_commit.append(hook)

    async def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventPayload],
                     cause: Cause) -> AppendResult:
        result = await self.store.append(aggregate_id, expected_version, events, cause, conn=self.conn)
        if not result.duplicate:
            self._count(len(result.events))
        return result

    async def append_each(self, appends: Sequence[Append]) -> list[list[Envelope]]:
        written = await self.store.append_each(self.conn, appends)
        self._count(sum(map(len, written)))
        return written

    def _count(self, appended: int) -> None:
        self.on_commit(lambda: EVENTS_APPENDED.inc(appended))

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part that may fail on its own: its hooks run only if it is kept."""
        registered = len(self._on_commit)
        try:
            async with self.conn.transaction():
                yield
        except BaseException:
            del self._on_commit[registered:]
            raise

    def committed(self) -> None:
        for hook in self._on_commit:
            try:
                hook()
            except Exception:  # the transaction stands: a failed hook must not report the command failed
                log.exception("an on-commit hook failed")


class EventStore:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock
        self._waiting: list[tuple[Append, asyncio.Future[AppendResult]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """A transaction for appends and the caller's rows (UnitOfWork)."""
        async with self.pool.acquire() as conn, conn.transaction():
            work = UnitOfWork(self, conn)
            yield work
        work.committed()

    async def load_for_command(self, aggregate_id: str, command_id: uuid.UUID | None,
                               snapshot_key: str | None = None) -> tuple[History, AppendResult | None]:
        """The aggregate's history (from its snapshot under `snapshot_key`, if any) and, if `command_id` was
        recorded before, what it produced: one query, so both are read in one snapshot of the database."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_LOAD_ONE, aggregate_id, command_id, snapshot_key)
            if (recorded_for := rows[0]["recorded_for"]) is not None:
                return History([]), await self._duplicate(conn, command_id, recorded_for)
        return _history(rows), None

    async def history(self, aggregate_id: str, snapshot_key: str | None = None) -> History:
        return (await self.load_for_command(aggregate_id, None, snapshot_key))[0]

    async def load_many(self, aggregate_ids: Sequence[str], snapshot_key: str | None = None) -> dict[str, History]:
        """Several aggregates' histories in one query; an aggregate without events has an empty one."""
        rows = await self.pool.fetch(_LOAD_MANY, list(dict.fromkeys(aggregate_ids)), None, snapshot_key)
        return {aggregate_id: _history(list(group))
                for aggregate_id, group in itertools.groupby(rows, key=lambda row: row["loaded_for"])}

    async def save_snapshot(self, aggregate_id: str, snapshot_key: str, snapshot: Snapshot) -> None:
        """Keeps `snapshot` as the aggregate's latest under its key, unless a newer one is kept already.
        The aggregate's snapshots under other keys (other code's) go once they are a day old."""
        await self.pool.execute(
            "WITH stale AS (DELETE FROM snapshots WHERE aggregate_id = $1 AND state_key <> $2 "
            "               AND taken_at < now() - interval '1 day') "
            "INSERT INTO snapshots (aggregate_id, state_key, aggregate_version, state) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (aggregate_id, state_key) DO UPDATE SET aggregate_version = excluded.aggregate_version, "
            "state = excluded.state, taken_at = now() WHERE snapshots.aggregate_version < excluded.aggregate_version",
            aggregate_id, snapshot_key, snapshot.version, snapshot.state)

    async def earlier_results(self, command_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AppendResult]:
        """What each of these command ids produced before, for those that were recorded."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT command_id, aggregate_id FROM commands WHERE command_id = ANY($1::uuid[])",
                                    command_ids)
            return {row["command_id"]: await self._duplicate(conn, row["command_id"], row["aggregate_id"])
                    for row in rows}

    async def _duplicate(self, conn: asyncpg.Connection, command_id: uuid.UUID | None,
                         aggregate_id: str) -> AppendResult:
        """What the command did the first time; its version is that of the aggregate its events went to,
        which a retried create (a newly generated id) does not name."""
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM events WHERE command_id = $1 ORDER BY position", command_id)
        recorded_for = rows[0]["aggregate_id"] if rows else aggregate_id
        return AppendResult([_envelope(row) for row in rows], await self.version(recorded_for, conn), duplicate=True)

    async def version(self, aggregate_id: str, conn: asyncpg.Connection | None = None) -> int:
        """The aggregate's current version: 0 when it has no events."""
        return (await self.versions([aggregate_id], conn))[aggregate_id]

    async def versions(self, aggregate_ids: Sequence[str], conn: asyncpg.Connection | None = None) -> dict[str, int]:
        """Each aggregate's current version (0 for one without events), in one query."""
        rows = await (conn or self.pool).fetch(
            "SELECT aggregate_id, max(aggregate_version) AS version FROM events "
            "WHERE aggregate_id = ANY($1::text[]) GROUP BY aggregate_id", list(aggregate_ids))
        return {aggregate_id: 0 for aggregate_id in aggregate_ids} | {r["aggregate_id"]: r["version"] for r in rows}

    async def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[EventPayload],
        cause: Cause,
        conn: asyncpg.Connection | None = None,
    ) -> AppendResult:
        """Appends `events` (at least one) atomically. With `conn`, joins the caller's transaction (for its
        own rows; a conflict then aborts that transaction): a UnitOfWork's, which counts them."""
        if conn is not None:
            return await self._append(conn, aggregate_id, expected_version, events, cause)
        result = await self._append_grouped((aggregate_id, expected_version, events, cause))
        EVENTS_APPENDED.inc(len(result.events) * (not result.duplicate))
        return result

    async def _append_grouped(self, append: Append) -> AppendResult:
        """Queues the append for a writer task, starting one if fewer than FLUSHES_AT_ONCE run."""
        answer: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((append, answer))
        if len(self._writers) < FLUSHES_AT_ONCE:
            # A task of its own, not this caller's: a caller cancelled meanwhile must not leave the
            # appends of others unwritten. And a context of its own: it must not log as the first.
            self._writers.add(asyncio.get_running_loop().create_task(self._write_waiting(),
                                                                       context=contextvars.Context()))
        return await answer

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_together(batch)
        finally:
            # At once, not in a done callback: an append queued in between would find no writer.
            self._writers.discard(asyncio.current_task())  # type: ignore[arg-type]  # a task: never None

    async def _write_together(self, batch: list[tuple[Append, asyncio.Future[AppendResult]]]) -> None:
        try:
            if len(batch) > 1 and await self._wrote_at_once(batch):
                return
            for append, answer in batch:
                await self._write_alone(append, answer)
        except Exception as error:  # noqa: BLE001 - every caller of the batch gets it
            for _, answer in batch:
                _settle(answer, error=error)
        finally:
            for _, answer in batch:
                answer.cancel()  # only those still unanswered: the task itself was cancelled

    async def _wrote_at_once(self, batch: list[tuple[Append, asyncio.Future[AppendResult]]]) -> bool:
        """Writes the group in one transaction; False if it wrote nothing because one append could not go."""
        # In aggregate order: two groups that share aggregates then wait for each other, not deadlock.
        batch = sorted(batch, key=lambda waiting: waiting[0][0])
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():  # CommandSeen is found after the statement: roll it back
                    written = await self.append_each(conn, [append for append, _ in batch])
                for ((_, version, _, _), answer), envelopes in zip(batch, written, strict=True):
                    _settle(answer, AppendResult(envelopes, version + len(envelopes), duplicate=False))
        except (ConcurrencyConflict, CommandSeen, asyncpg.PostgresError):
            return False  # nothing was written: each on its own sorts out whose it was (or gets its error)
        return True

    async def _write_alone(self, append: Append, answer: asyncio.Future[AppendResult]) -> None:
        try:
            async with self.pool.acquire() as conn:
                _settle(answer, await self._append(conn, *append))
        except Exception as error:  # noqa: BLE001 - the caller waiting on this append gets it
            _settle(answer, error=error)

    async def append_each(self, conn: asyncpg.Connection, appends: Sequence[Append]) -> list[list[Envelope]]:
        """Appends to many aggregates, each (aggregate id, expected version, events, cause), with one
        statement in the caller's transaction, and returns each one's envelopes; the caller counts the
        events once it commits. Raises ConcurrencyConflict if any aggregate changed since its version
        was read, CommandSeen if any command id was recorded before: the caller then rolls back (one
        `append` each sorts out which)."""
        now = self.clock.now()
        each = [self._wrap(aggregate_id, version, events, cause, now)
                for aggregate_id, version, events, cause in appends]
        envelopes = [envelope for appended in each for envelope in appended]
        topics = [type(event).topic for _, _, events, _ in appends for event in events]
        try:
            written = await self._insert(conn, now, envelopes, topics)
        except asyncpg.UniqueViolationError as error:
            raise ConcurrencyConflict(f"one of {len(appends)} aggregates changed since it was read") from error
        if written != len(envelopes):
            raise CommandSeen(f"{len(envelopes) - written} of {len(envelopes)} events belong to commands seen before")
        return each

    async def _append(self, conn: asyncpg.Connection, aggregate_id: str, expected_version: int,
                      events: Sequence[EventPayload], cause: Cause) -> AppendResult:
        now = self.clock.now()
        envelopes = self._wrap(aggregate_id, expected_version, events, cause, now)
        try:
            written = await self._insert(conn, now, envelopes, [type(event).topic for event in events])
        except asyncpg.UniqueViolationError as error:
            raise ConcurrencyConflict(f"{aggregate_id} changed since version {expected_version}") from error
        if not written:
            # A concurrent twin blocked on the command id's primary key until the first committed.
            return await self._duplicate(conn, cause.command_id, aggregate_id)
        return AppendResult(envelopes, expected_version + len(envelopes), duplicate=False)

    @staticmethod
    def _wrap(aggregate_id: str, version: int, events: Sequence[EventPayload], cause: Cause,
              now: datetime) -> list[Envelope]:
        """The envelopes of `events`, numbered on from the aggregate's `version`."""
        return [
            Envelope(
                event_id=uuid.uuid4(),
                type=event.event_type,
                schema_version=event.schema_version,
                aggregate_type=event.aggregate_type,
                aggregate_id=aggregate_id,
                aggregate_version=version + offset,
                occurred_at=now,
                correlation_id=cause.correlation_id,
                causation_id=cause.causation_id,
                command_id=cause.command_id,
                actor=cause.actor,
                payload=event.model_dump(mode="json"),
            )
            for offset, event in enumerate(events, start=1)
        ]

    @staticmethod
    async def _insert(conn: asyncpg.Connection, now: datetime, envelopes: list[Envelope], topics: list[str]) -> int:
        """How many of the events were written: not those of a command id recorded before."""
        columns = ("event_id", "type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version",
                   "command_id", "correlation_id", "causation_id", "actor")
        status = await conn.execute(
            _APPEND,
            *([getattr(e, column) for e in envelopes] for column in columns),
            topics,
            [json.dumps(e.payload) for e in envelopes],
            [encode(e) for e in envelopes],
            now,
        )
        return int(status.split()[-1])

    async def republish(self, from_position: int, batch: int = 5000) -> int:
        """Queues stored events again for the relay (after a broker lost its data)."""
        queued, after = 0, from_position - 1
        while rows := await self.pool.fetch(
            f"SELECT position, topic, {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            batch,
        ):
            await self.pool.executemany(
                "INSERT INTO outbox (position, topic, key, value) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (position) DO NOTHING",
                [(r["position"], r["topic"], r["aggregate_id"], encode(_envelope(r))) for r in rows],
            )
            queued += len(rows)
            after = rows[-1]["position"]
        return queued
