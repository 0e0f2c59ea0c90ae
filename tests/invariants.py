"""What must hold after any fault, checked against the real servers once the system is idle again,
and the report of every fault tried (printed at the end of the run by the root conftest.py).

Invariants, over the events each service stored since a `Mark` (taken when the test began):
- every accepted command's events are stored once (its receipt's events, no more for its command id);
- every stored event is published (found on its Kafka topic) and the outboxes are drained;
- every consumer handled every stored event of its topics (of the types it acts on), and the
  gateway projected each one (audit log, projected versions);
- every due email was sent once: the caught mail equals the notifier's sent notifications, up to
  `mail_window` extra copies (a crash between the SMTP server accepting a mail and it being recorded);
- every read model equals a rebuild from the audit log (the gateway's replay, on a copy);
- no consumer is stuck: every group's committed offsets are at the end of its topics.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from fault_tools import MailWatch, eventually, schema
from mfaplane_contracts.topics import EVENT_TOPICS, consumer_group_ids
from mfaplane_devstack import SERVICES
from mfaplane_eventing import db, group_lag
from mfaplane_gateway.__main__ import SPEC as GATEWAY
from mfaplane_gateway.read_models import replay
from mfaplane_mfa.__main__ import SPEC as MFA
from mfaplane_notifier.__main__ import SPEC as NOTIFIER
from mfaplane_notifier.emails import SUBJECTS
from mfaplane_scheduler.__main__ import SPEC as SCHEDULER

CONSUMER_SPECS = (GATEWAY, MFA, NOTIFIER, SCHEDULER)
CONSUMERS = {spec.name: {t.name for t in spec.consumes} for spec in CONSUMER_SPECS}
# The event types each consumer acts on (None: all); it skips the others without recording them.
HANDLED = {spec.name: None if spec.handles is None else {t.event_type for t in spec.handles}
           for spec in CONSUMER_SPECS}
IDLE_TIMEOUT = 120.0
ADMIN_SUFFIX = " (admin portal)"


@dataclass(frozen=True)
class Mark:
    """Where a fault test began: each service's last event position, the event topics' end offsets
    (None: read the topics from their start) and a watch on the mail caught from then on."""

    positions: dict[str, int]
    offsets: dict[TopicPartition, int] | None
    mail: MailWatch


async def mark(stack, *, offsets: bool = True) -> Mark:
    """`offsets=False` when the broker may lose its log during the test (old offsets mean nothing then)."""
    positions = {}
    for service in SERVICES:
        async with schema(stack, service) as conn:
            positions[service] = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    ends = await _end_offsets(stack.kafka_client_options()) if offsets else None
    return Mark(positions, ends, MailWatch(stack.infra.maildir))


@dataclass(frozen=True)
class Check:
    invariant: str
    held: bool
    figures: str


@dataclass
class Outcome:
    checks: list[Check] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return all(c.held for c in self.checks)

    def add(self, invariant: str, problems: object, figures: str) -> None:
        self.checks.append(Check(invariant, not problems, figures + (f"; VIOLATED: {problems}" if problems else "")))

    def account(self) -> str:
        return "\n".join(f"  [{'held' if c.held else 'FAILED'}] {c.invariant}: {c.figures}" for c in self.checks)


@dataclass(frozen=True)
class Entry:
    fault: str
    load: str
    outcome: Outcome


REPORT: list[Entry] = []  # read by pytest_terminal_summary in the root conftest.py


def report_lines() -> list[str]:
    lines = []
    for entry in REPORT:
        lines += [f"{'HELD' if entry.outcome.held else 'VIOLATED'}: {entry.fault}", f"  load: {entry.load}",
                  entry.outcome.account()]
    return lines


async def check_and_record(stack, fault: str, load: str, since: Mark, **options) -> Outcome:
    """Checks the invariants, records the outcome in the report and fails the test if one did not hold."""
    outcome = await check_invariants(stack, since, **options)
    REPORT.append(Entry(fault, load, outcome))
    assert outcome.held, f"invariants after {fault}:\n{outcome.account()}"
    return outcome


async def check_invariants(stack, since: Mark, *, accepted: Iterable[dict] = (), mail_window: int = 0,
                           idle_timeout: float = IDLE_TIMEOUT) -> Outcome:
    """Waits until the system is idle, then checks every invariant over what happened since the mark.

    `accepted`: the receipts of the commands the test saw accepted (without them that check is left
    out); `mail_window`: how many mails may have been sent twice (see the module docstring).
    """
    await wait_until_idle(stack, since, idle_timeout)
    stored = await _stored_events(stack, since.positions)
    outcome = Outcome()
    if receipts := list(accepted):
        _check_commands(outcome, receipts, stored)
    await _check_published(stack, outcome, stored, since)
    await _check_consumed(stack, outcome, stored)
    await _check_mail(stack, outcome, stored, since.mail, mail_window)
    await _check_read_models(stack, outcome)
    lag = await consumer_lag(stack.kafka_client_options())
    outcome.add("no consumer is stuck (committed offsets at the end of the log)",
                {g: n for g, n in lag.items() if n}, f"groups {sorted(lag)}")
    return outcome


async def wait_until_idle(stack, since: Mark, timeout: float = IDLE_TIMEOUT) -> None:
    """Until every outbox is empty, every consumer group is at the end of its topics and no mail is pending."""

    async def busy() -> dict:
        backlog = {s: n for s, n in (await _outbox_sizes(stack)).items() if n}
        try:
            lag = {g: n for g, n in (await consumer_lag(stack.kafka_client_options())).items() if n}
        except KafkaError as error:  # the broker still settling after a fault: not idle, ask again
            lag = {"unknown": repr(error)}
        pending = await _pending_mail(stack, since.positions)
        return {"outbox": backlog, "lag": lag, "pending mail": pending}

    try:
        await eventually(busy, timeout, "the system idle", 0.5, done=lambda b: not any(b.values()))
    except AssertionError as stuck:
        groups = {group: await asyncio.to_thread(_group_state, stack, group)
                  for consumer in CONSUMERS for group in consumer_group_ids(consumer)}
        stuck_partitions = await _stuck_partitions(stack.kafka_client_options())
        raise AssertionError(f"{stuck}\nconsumer groups: {groups}\n{stuck_partitions}\n"
                             f"{_warnings_logged(stack)}") from None


def _group_state(stack, group: str) -> str:
    try:
        state, members = stack.group_state(group)
    except Exception as error:  # noqa: BLE001 - a report of what was seen, whatever it was
        return repr(error)
    return f"{state} with {members} member(s)"


TELLING = ('"level": "WARNING"', '"level": "ERROR"', '"logger": "aiokafka.consumer.group_coordinator"')


def _warnings_logged(stack, lines: int = 15) -> str:
    """The last warnings, errors and consumer-group changes each service logged: why it is stuck, if it knows."""
    tails = []
    for service in SERVICES:
        path = stack.supervisor.log_path(service)
        logged = path.read_text(errors="replace").splitlines() if path.exists() else []
        telling = [line[:400] for line in logged if any(mark in line for mark in TELLING)]
        tails.append(f"--- {service}: the last {lines} of {len(telling)}\n" + "\n".join(telling[-lines:]))
    return "\n".join(tails)


async def _outbox_sizes(stack) -> dict[str, int]:
    sizes = {}
    for service in SERVICES:
        async with schema(stack, service) as conn:
            sizes[service] = await conn.fetchval("SELECT count(*) FROM outbox")
    return sizes


async def _stored_events(stack, positions: dict[str, int]) -> dict[uuid.UUID, asyncpg.Record]:
    """Every event stored after the positions, by event id (with its service as `service`)."""
    stored = {}
    for service in SERVICES:
        async with schema(stack, service) as conn:
            rows = await conn.fetch("SELECT $2::text AS service, event_id, command_id, topic, type, aggregate_id, "
                                    "aggregate_version FROM events WHERE position > $1", positions[service], service)
        stored.update({row["event_id"]: row for row in rows})
    return stored


def _check_commands(outcome: Outcome, receipts: list[dict], stored: dict) -> None:
    """A command retried after a refusal (same Idempotency-Key) must not have stored its events twice."""
    per_command = Counter(row["command_id"] for row in stored.values() if row["command_id"] is not None)
    missing, repeated = [], {}
    for receipt in receipts:
        ids = [uuid.UUID(e) for e in receipt["event_ids"]]
        missing += [str(e) for e in ids if e not in stored]
        if ids and ids[0] in stored and per_command[command := stored[ids[0]]["command_id"]] != len(ids):
            repeated[str(command)] = {"stored": per_command[command], "receipt": len(ids)}
    events = sum(len(r["event_ids"]) for r in receipts)
    outcome.add("every accepted command's events are stored once",
                {"missing": missing[:10], "repeated": repeated} if missing or repeated else None,
                f"{len(receipts)} accepted commands, {events} events")


async def _check_published(stack, outcome: Outcome, stored: dict, since: Mark) -> None:
    on_topics = await _published_ids(stack.kafka_client_options(), since.offsets)
    unpublished = [str(e) for e, row in stored.items() if e not in on_topics.get(row["topic"], set())]
    backlog = {s: n for s, n in (await _outbox_sizes(stack)).items() if n}
    outcome.add("every stored event is on its topic, outboxes drained",
                {"not on Kafka": unpublished[:10], "outbox": backlog} if unpublished or backlog else None,
                f"{len(stored)} stored events, {sum(map(len, on_topics.values()))} read from the topics")


async def _check_consumed(stack, outcome: Outcome, stored: dict) -> None:
    unhandled, handled = await _unhandled(stack, stored)
    not_audited, behind, audited, aggregates = await _unprojected(stack, stored)
    problems = {"unhandled": unhandled, "not audited": not_audited[:10],
                "projected version != last version": dict(list(behind.items())[:10])}
    outcome.add("every stored event handled by each consumer of its topic and projected once",
                problems if any(problems.values()) else None,
                f"{handled} handlings by {len(CONSUMERS)} consumers, {audited} audited, {aggregates} aggregates")


async def _unhandled(stack, stored: dict) -> tuple[dict[str, dict], int]:
    """Per consumer, the events it should have handled and did not (with those it parked); and how many it did."""
    unhandled, handled = {}, 0
    for consumer, topics in CONSUMERS.items():
        wanted = [e for e, row in stored.items()
                  if row["topic"] in topics and (HANDLED[consumer] is None or row["type"] in HANDLED[consumer])]
        async with schema(stack, consumer) as conn:
            done = {r["event_id"] for r in await conn.fetch(  # by the service's own group (the audit log's: below)
                "SELECT event_id FROM processed_events WHERE consumer_group = '' AND event_id = ANY($1::uuid[])",
                wanted)}
            parked = await conn.fetch("SELECT event_id, error FROM dead_letters WHERE event_id = ANY($1::uuid[])",
                                      wanted)
        handled += len(done)
        if missing := [e for e in wanted if e not in done]:
            unhandled[consumer] = {"count": len(missing), "parked": [dict(r) for r in parked][:5],
                                   "first": [f"{stored[e]['service']}:{stored[e]['aggregate_id']}"
                                             f"@{stored[e]['aggregate_version']}" for e in missing[:5]]}
    return unhandled, handled


async def _unprojected(stack, stored: dict) -> tuple[list[str], dict, int, int]:
    """The events missing from the gateway's audit log, the aggregates not projected up to their last
    version (projected, last), and how many events were audited and aggregates seen."""
    last: dict[str, int] = {}
    for row in stored.values():
        last[row["aggregate_id"]] = max(row["aggregate_version"], last.get(row["aggregate_id"], 0))
    async with schema(stack, "gateway") as conn:
        audited = {r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM audit_log WHERE event_id = ANY($1::uuid[])", list(stored))}
        projected = dict(await conn.fetch("SELECT aggregate_id, version FROM projected_versions "
                                          "WHERE aggregate_id = ANY($1::text[])", list(last)))
    behind = {a: (projected.get(a), v) for a, v in last.items() if projected.get(a) != v}
    return [str(e) for e in stored if e not in audited], behind, len(audited), len(last)


async def _pending_mail(stack, positions: dict[str, int]) -> int:
    async with schema(stack, "notifier") as conn:
        return await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending' "
                                   "AND event_id = ANY($1::uuid[])", await _mail_causes(stack, positions))


async def _mail_causes(stack, positions: dict[str, int]) -> list[uuid.UUID]:
    """Ids of the events since the positions that can cause a mail (the mfa and scheduler services')."""
    ids = []
    for service in ("mfa", "scheduler"):
        async with schema(stack, service) as conn:
            ids += [r["event_id"] for r in await conn.fetch("SELECT event_id FROM events WHERE position > $1",
                                                           positions[service])]
    return ids


async def _check_mail(stack, outcome: Outcome, stored: dict, mail: MailWatch, mail_window: int) -> None:
    async with schema(stack, "notifier") as conn:
        rows = await conn.fetch(
            "SELECT r.email, r.kind AS recipient_kind, n.kind, n.status, n.last_error FROM notifications n "
            "LEFT JOIN recipients r USING (principal_id) WHERE n.event_id = ANY($1::uuid[])", list(stored))
    due = Counter((r["email"], SUBJECTS[r["kind"]] + (ADMIN_SUFFIX if r["recipient_kind"] == "admin" else ""))
                  for r in rows if r["status"] == "sent")
    caught = Counter()
    for address, subjects in mail.subjects({r["email"] for r in rows if r["email"]}).items():
        caught.update({(address, subject): n for subject, n in subjects.items()})
    missing = {k: due[k] - caught[k] for k in due if caught[k] < due[k]}
    extra = {k: caught[k] - due[k] for k in caught if caught[k] > due[k]}
    # Given up on before the notifier had heard of the recipient (no email then) or deadline: due, never
    # sent. (Dead after the SMTP server refused it, or stayed away past the retry budget, is by design.)
    abandoned = [(r["email"], r["kind"]) for r in rows if r["status"] == "dead"
                 and (r["last_error"] or "").endswith("not known yet")]
    statuses = Counter(r["status"] for r in rows)
    problems = ({"not caught": missing, "extra": extra, "abandoned": abandoned}
                if missing or abandoned or sum(extra.values()) > mail_window else None)
    outcome.add("every due email sent once", problems,
                f"notifications {dict(statuses)}, {sum(caught.values())} mails caught, "
                f"{sum(extra.values())} repeated (allowed {mail_window})")


async def _check_read_models(stack, outcome: Outcome) -> None:
    differences = await rebuild_differences(stack.infra.database_url)
    outcome.add("every read model equals a rebuild from the audit log",
                {name: n for name, n in differences.items() if n} or None,
                f"rows differing per read model {differences}")


async def rebuild_differences(database_url: str) -> dict[str, int]:
    """Copies the gateway's audit log and live read models (one snapshot) into a scratch schema, rebuilds
    the read models there with the gateway's replay and counts the rows that differ, per read model."""
    scratch = f"gateway_check_{uuid.uuid4().hex[:8]}"
    await db.migrate(database_url, scratch, GATEWAY.migration_dirs())
    conn = await asyncpg.connect(database_url, server_settings={"search_path": scratch})
    try:
        async with conn.transaction(isolation="repeatable_read"):
            live = dict(await conn.fetch("SELECT name, current_table FROM gateway.read_models"))
            await conn.execute("INSERT INTO audit_log SELECT * FROM gateway.audit_log")
            # what the replay leaves to the projector: the events the read models have not applied
            await conn.execute("INSERT INTO projected_versions SELECT * FROM gateway.projected_versions")
            for name, table in live.items():
                await conn.execute(f"INSERT INTO {name}_v1 SELECT * FROM gateway.{table}")
        pool = await db.create_pool(database_url, scratch, max_size=1)
        try:
            rebuilt = await replay.rebuild(pool)
        finally:
            await pool.close()
        return {name: await conn.fetchval(
            f"SELECT count(*) FROM ((TABLE {name}_v1 EXCEPT ALL TABLE {table}) "
            f"UNION ALL (TABLE {table} EXCEPT ALL TABLE {name}_v1)) AS d") for name, table in rebuilt.current.items()}
    finally:
        await conn.execute(f"DROP SCHEMA {scratch} CASCADE")
        await conn.close()


async def _end_offsets(client: dict[str, Any]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in EVENT_TOPICS for p in range(t.partitions)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def _published_ids(client: dict[str, Any], start: dict[TopicPartition, int] | None) -> dict[str, set[uuid.UUID]]:
    """The event ids on each event topic, from `start` (default: the beginning) to the current end."""
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in EVENT_TOPICS for p in range(t.partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, (start or {}).get(tp, 0))
        ids: dict[str, set[uuid.UUID]] = {t.name: set() for t in EVENT_TOPICS}
        remaining = {tp for tp in partitions if (start or {}).get(tp, 0) < ends[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=5000)
            if not batch:
                raise AssertionError(f"the topics stopped short of their end offsets: {sorted(map(str, remaining))}")
            for tp, records in batch.items():
                ids[tp.topic].update(uuid.UUID(json.loads(r.value)["event_id"]) for r in records)
                if records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return ids
    finally:
        await consumer.stop()


async def consumer_lag(client: dict[str, Any]) -> dict[str, int]:
    """Per consumer group, how many messages of its topics lie beyond its committed offsets
    (`client`: aiokafka's options, `stack.kafka_client_options()`)."""
    return {group: sum(end - committed for committed, end in behind.values())
            for group, behind in (await _partitions_behind(client)).items()}


async def _partitions_behind(client: dict[str, Any]) -> dict[str, dict[TopicPartition, tuple[int, int]]]:
    """Per consumer group, its partitions whose committed offset is short of the end: (committed, end)."""
    admin = AIOKafkaAdminClient(**client)
    reader = AIOKafkaConsumer(**client, enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        return {group: {tp: (committed, end) for tp, (committed, end) in
                        (await group_lag.offsets(admin, reader, group, spec.consumes)).items() if committed < end}
                for spec in CONSUMER_SPECS for group in consumer_group_ids(spec.name)}
    finally:
        await reader.stop()
        await admin.close()


async def _stuck_partitions(client: dict[str, Any]) -> str:
    """Where each group is behind, and what a fresh read from its committed offset finds there: records
    mean the group's consumer does not take them, none mean the broker does not serve them."""
    lines = []
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False)
    try:
        await consumer.start()
        for group, behind in (await _partitions_behind(client)).items():
            for tp, (committed, end) in sorted(behind.items()):
                consumer.assign([tp])
                consumer.seek(tp, committed)
                records = (await consumer.getmany(tp, timeout_ms=2000)).get(tp, [])
                found = f"{len(records)} from offset {records[0].offset}" if records else "none"
                lines.append(f"{group}: {tp.topic}[{tp.partition}] committed {committed} of {end}; read finds {found}")
    except KafkaError as error:
        lines.append(f"could not read the partitions behind: {error!r}")
    finally:
        await consumer.stop()
    return "\n".join(lines)
