"""Auditors read the story in the order it happened, whatever order the topics delivered it in.

Kafka keeps each aggregate's events in order, not the order between topics: a user's UserCreated
(identity's topic) can reach the gateway after the MFARequired (mfa's topic) that followed it. These
tests publish events, signed by the service that owns their topic as its outbox relay would sign
them, in orders of arrival that delay or a skewed clock produce, then read the export, a user's
history, `state?at=` and compliance. `gateway-settled` is a gateway that, like a production one,
serves an audit record only once its place in the story is AUDIT_SETTLE_SECONDS old (the stack's
own gateway serves at once, so that tests read what they just did).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fault_tools import eventually
from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_contracts.topics import TOPICS_BY_NAME
from mfaplane_eventing import event_signing
from portal_flows import problem
from test_audit import ndjson, state, verify_audit
from trust_tools import publish, service_key

MS = timedelta(milliseconds=1)
SECOND = timedelta(seconds=1)
SETTLE = timedelta(seconds=600)


async def emit(stack, payload: EventPayload, occurred_at: datetime, version: int = 1) -> str:
    """Publishes one event as its topic's owner would, and returns its id."""
    topic = TOPICS_BY_NAME[payload.topic]
    subject = getattr(payload, "principal_id", None) or payload.user_id
    aggregate_id = f"{payload.scope}:{subject}" if hasattr(payload, "scope") else str(subject)
    envelope = Envelope(event_id=uuid.uuid4(), type=payload.event_type, schema_version=payload.schema_version,
                        aggregate_type=payload.aggregate_type, aggregate_id=aggregate_id, aggregate_version=version,
                        occurred_at=occurred_at, correlation_id=uuid.uuid4(), actor=f"api_key:{uuid.uuid4()}",
                        payload=payload.model_dump(mode="json"))
    value = event_signing.sign_batch([envelope.model_dump_json().encode()], service_key(stack, topic.owner))[0]
    await publish(stack, topic.name, aggregate_id, value)
    return str(envelope.event_id)


def created(user: uuid.UUID) -> identity.UserCreated:
    return identity.UserCreated(user_id=user, email=f"order-{user.hex[:12]}@example.com", name="Ada Order")


def required(user: uuid.UUID) -> mfa.MFARequired:
    """Required with no enrollment period: no timer, so nothing follows on its own."""
    return mfa.MFARequired(principal_id=user, scope="user_portal", principal_kind="user", enrollment_days=None,
                           deadline=None)


async def history(auditor: httpx.AsyncClient, user: uuid.UUID, count: int) -> list[dict]:
    """The user's audit history, once the gateway has stored `count` records of it."""
    return await eventually(lambda: ndjson(auditor, "/v1/audit/events", principal_id=str(user)), 60,
                            f"{count} audit records of {user}", done=lambda records: len(records) >= count)


def event_ids(records: list[dict]) -> list[str]:
    return [record["envelope"]["event_id"] for record in records]


def place(record: dict) -> tuple[datetime, int]:
    return datetime.fromisoformat(record["story_at"]), record["seq"]


async def test_a_user_created_then_required_reads_in_that_order_though_the_requirement_arrived_first(
        stack, auditor, clock) -> None:
    user, start = uuid.uuid4(), clock.now() - timedelta(minutes=1)
    requirement = await emit(stack, required(user), start + 74 * MS)
    await history(auditor, user, 1)
    creation = await emit(stack, created(user), start)

    records = await history(auditor, user, 2)
    assert event_ids(records) == [creation, requirement]
    assert records[0]["seq"] > records[1]["seq"], "stored in the order they arrived"
    assert [datetime.fromisoformat(r["story_at"]) for r in records] == [start, start + 74 * MS]
    everything = await ndjson(auditor, "/v1/audit/events")
    assert list(map(place, everything)) == sorted(map(place, everything))
    assert [i for i in event_ids(everything) if i in (creation, requirement)] == [creation, requirement]

    problem(await auditor.get(f"/v1/audit/users/{user}/state", params={"at": (start - MS).isoformat()}), 404,
            "user_not_found")
    assert (await state(auditor, str(user), start + 30 * MS))["status"] == "none"
    assert (await state(auditor, str(user), start + 74 * MS))["status"] == "required_no_period"

    async def not_set_up(at: datetime) -> set[str]:
        return {line["principal_id"] for line in await ndjson(auditor, "/v1/audit/compliance", at=at.isoformat())}

    assert str(user) not in await not_set_up(start + 30 * MS)
    assert str(user) in await not_set_up(start + 74 * MS)


async def test_an_aggregates_versions_stay_in_order_when_its_service_clock_goes_back(stack, auditor, clock) -> None:
    user, start = uuid.uuid4(), clock.now() - timedelta(minutes=1)
    creation = await emit(stack, created(user), start)
    requirement = await emit(stack, required(user), start + 2 * SECOND)
    # The next version, from an mfa replica whose clock is a second behind the one that required.
    enrollment = await emit(stack, mfa.TOTPEnrolled(principal_id=user, scope="user_portal", secret_id=uuid.uuid4(),
                                                    time_step=1, recovery_codes_issued=10), start + SECOND, version=2)

    records = await history(auditor, user, 3)
    assert event_ids(records) == [creation, requirement, enrollment]
    occurred = [datetime.fromisoformat(r["envelope"]["occurred_at"]) for r in records]
    assert occurred[2] < occurred[1]
    assert records[2]["story_at"] == records[1]["story_at"]
    before = await state(auditor, str(user), start + 1.5 * SECOND)
    assert (before["status"], before["set_up"]) == ("none", False), "not set up before MFA was required"
    assert (await state(auditor, str(user), start + 2 * SECOND))["status"] == "active"


async def test_a_reader_resuming_mid_way_neither_repeats_nor_skips_a_record(stack, auditor, clock) -> None:
    user, start = uuid.uuid4(), clock.now() - timedelta(minutes=1)
    creation = await emit(stack, created(user), start)
    requirement = await emit(stack, required(user), start + 2 * SECOND)
    dismissal = await emit(stack, mfa.EnrollmentPromptDismissed(principal_id=user, scope="user_portal",
                                                                days_remaining=0), start + 4 * SECOND, version=2)
    await history(auditor, user, 3)
    first = await ndjson(auditor, "/v1/audit/events", principal_id=str(user), limit=2)
    assert event_ids(first) == [creation, requirement]

    # Stored after the reader passed its place: an update the identity topic delivered very late.
    update = await emit(stack, identity.UserUpdated(user_id=user, email=f"late-{user.hex[:12]}@example.com",
                                                    name="Ada Late"), start + SECOND, version=2)
    await history(auditor, user, 4)
    rest = await ndjson(auditor, "/v1/audit/events", principal_id=str(user), cursor=first[-1]["cursor"])
    assert event_ids(rest) == [dismissal, update], "the rest of what it was reading, then what arrived since"
    assert event_ids(await ndjson(auditor, "/v1/audit/events", principal_id=str(user))) == [
        creation, update, requirement, dismissal], "a read from the start has it in its place"

    pages, cursor = [], None
    while page := await ndjson(auditor, "/v1/audit/events", principal_id=str(user), limit=1,
                               **({"cursor": cursor} if cursor else {})):
        pages += page
        cursor = page[-1]["cursor"]
    assert event_ids(pages) == [creation, update, requirement, dismissal]


async def test_an_export_whose_lines_are_not_in_chain_order_verifies(stack, auditor, clock, tmp_path: Path) -> None:
    user, start = uuid.uuid4(), clock.now() - timedelta(minutes=1)
    await emit(stack, required(user), start + SECOND)
    await history(auditor, user, 1)
    await emit(stack, created(user), start)
    await history(auditor, user, 2)

    export = tmp_path / "audit.ndjson"
    async with auditor.stream("GET", "/v1/audit/events") as response:
        with export.open("w") as file:
            async for line in response.aiter_lines():
                file.write(line + "\n")
    seqs = [record["seq"] for record in await ndjson(auditor, "/v1/audit/events")]
    assert seqs != sorted(seqs)
    for source in (("--file", str(export)), ()):
        verified = verify_audit(stack, *source)
        assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr


@pytest.fixture(scope="module")
def settled_gateway(stack) -> Iterator[str]:
    url = stack.start_replica("gateway", "gateway-settled", {"AUDIT_SETTLE_SECONDS": str(SETTLE.seconds)})
    stack.wait_for_group("gateway", members=2)
    try:
        yield url
    finally:
        stack.take_down("gateway-settled")
        stack.wait_for_group("gateway", members=1)


@pytest.fixture
async def settled_auditor(settled_gateway, api_keys) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=settled_gateway, timeout=30,
                                 headers={"Authorization": f"Bearer {api_keys['auditor']}"}) as client:
        yield client


async def test_the_export_serves_a_record_once_its_place_has_settled_and_never_reorders_what_it_served(
        stack, auditor, settled_auditor, clock) -> None:
    clock.advance(SETTLE)  # everything stored so far settles
    user, start = uuid.uuid4(), clock.now()
    requirement = await emit(stack, required(user), start)
    await history(auditor, user, 1)
    creation = await emit(stack, created(user), start - SETTLE / 2)  # delayed, but less than the horizon
    await history(auditor, user, 2)

    served = await ndjson(settled_auditor, "/v1/audit/events")
    assert not {creation, requirement} & set(event_ids(served))
    assert await ndjson(settled_auditor, "/v1/audit/events", principal_id=str(user)) == []
    clock.advance(SETTLE)
    now_served = await ndjson(settled_auditor, "/v1/audit/events")
    resumed = await ndjson(settled_auditor, "/v1/audit/events", cursor=served[-1]["cursor"])
    assert event_ids(now_served[:len(served)]) == event_ids(served), "what was served keeps its order"
    assert event_ids(resumed) == event_ids(now_served[len(served):])
    assert [i for i in event_ids(resumed) if i in (creation, requirement)] == [creation, requirement]
