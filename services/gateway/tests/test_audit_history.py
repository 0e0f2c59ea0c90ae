"""The audit log's hash chain, and principals' MFA states folded from it at past moments."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing.service_keys import TrustedKeys
from mfaplane_gateway.audit import audit_log, audit_verify
from mfaplane_gateway.audit.audit_history import PrincipalState, apply, states_at

DAY = timedelta(days=1)


def _chain(n: int) -> list[tuple[int, str, str, dict]]:
    records, head = [], audit_log.GENESIS
    for seq in range(1, n + 1):
        envelope = {"event_id": str(uuid.uuid4()), "payload": {"n": seq}}
        records.append((seq, head, audit_log.link_hash(seq, head, envelope), envelope))
        head = records[-1][2]
    return records


async def _first_broken_link(records: list[tuple[int, str, str, dict]]) -> audit_log.BrokenLink | None:
    async def each():
        for record in records:
            yield record

    return (await audit_verify.verify(each(), TrustedKeys({})))[2]


async def test_an_untouched_chain_verifies() -> None:
    assert await _first_broken_link(_chain(5)) is None


async def test_an_edited_removed_or_reordered_record_is_the_first_broken_link() -> None:
    edited = _chain(5)
    edited[2] = (*edited[2][:3], {**edited[2][3], "payload": {"n": 99}})
    assert await _first_broken_link(edited) == audit_log.BrokenLink(3, "content does not match its hash")
    assert (await _first_broken_link([r for r in _chain(5) if r[0] != 4])).seq == 4
    records = _chain(5)
    assert (await _first_broken_link([records[0], records[2], records[1]])).seq == 2


async def test_a_rehashed_edit_breaks_the_next_link() -> None:
    records = _chain(4)
    envelope = {**records[1][3], "payload": {"n": 99}}
    records[1] = (2, records[1][1], audit_log.link_hash(2, records[1][1], envelope), envelope)
    assert await _first_broken_link(records) == audit_log.BrokenLink(3, "does not follow the previous record")


async def _store(pool, envelopes) -> None:
    for envelope in envelopes:
        async with pool.acquire() as conn, conn.transaction():
            await audit_log.append(conn, [envelope], envelope.occurred_at)


async def test_states_at_past_moments(gateway_pool, history) -> None:
    ada, start = uuid.uuid4(), history.now
    scope = {"principal_id": ada, "scope": "user_portal"}
    created = history.envelope(identity.UserCreated(user_id=ada, email="ada@example.com", name="Ada"))
    required = history.envelope(mfa.MFARequired(**scope, principal_kind="user", enrollment_days=1,
                                                deadline=start + 2 * DAY), DAY)
    extended = history.envelope(mfa.EnrollmentExtended(**scope, enrollment_days=3, deadline=start + 7 * DAY),
                                3 * DAY)
    enrolled = history.envelope(mfa.TOTPEnrolled(**scope, secret_id=uuid.uuid4(), time_step=1,
                                                 recovery_codes_issued=10), DAY)
    reset = history.envelope(mfa.MFAReset(**scope, enrollment_days=2, deadline=start + 8 * DAY,
                                          shredded_secret_id=None), DAY)
    removed = history.envelope(mfa.MFARequirementRemoved(**scope), DAY)
    await _store(gateway_pool, [created, required, extended, enrolled, reset, removed])

    async def status(moment) -> MFAStatus | None:
        state = await anext(states_at(gateway_pool, moment, ada), None)
        return state and state.status(moment)

    assert await status(created.occurred_at - timedelta(seconds=1)) is None
    assert await status(created.occurred_at) == MFAStatus.NONE
    assert await status(required.occurred_at) == MFAStatus.ENROLLING
    assert await status(extended.occurred_at - timedelta(seconds=1)) == MFAStatus.EXPIRED
    assert await status(extended.occurred_at) == MFAStatus.ENROLLING
    assert await status(enrolled.occurred_at) == MFAStatus.ACTIVE
    assert await status(reset.occurred_at) == MFAStatus.ENROLLING
    assert await status(removed.occurred_at - timedelta(seconds=1)) == MFAStatus.ENROLLING
    assert await status(removed.occurred_at) == MFAStatus.NONE


async def test_states_of_everyone_across_batches_match_a_fold_in_memory(gateway_pool, history) -> None:
    envelopes = history.random(random.Random(5), users=7, steps=120)
    await _store(gateway_pool, envelopes)
    moment = envelopes[80].occurred_at
    expected: dict[uuid.UUID, PrincipalState] = {}
    for envelope in envelopes[:81]:
        body = envelope.body()
        principal = getattr(body, "principal_id", None) or getattr(body, "user_id", None)
        if principal is not None:
            expected[principal] = apply(expected.get(principal, PrincipalState(principal)), envelope)
    found = [state async for state in states_at(gateway_pool, moment, batch=4)]
    assert [s.principal_id for s in found] == sorted(expected)
    assert found == [expected[p] for p in sorted(expected)]
    assert len({state.status(moment) for state in found}) >= 3
