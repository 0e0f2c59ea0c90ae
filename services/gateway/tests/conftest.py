"""A fresh gateway schema per test, and synthetic event histories to project into it."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import mfaplane_gateway
from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import Envelope, EventPayload
from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_gateway.audit import audit_log
from mfaplane_gateway.read_models import projector

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIGRATIONS = Path(mfaplane_gateway.__file__).parent / "migrations"


@pytest.fixture
async def gateway_pool(infra) -> AsyncIterator[asyncpg.Pool]:
    schema = f"gateway_unit_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, MIGRATIONS])
    pool = await db.create_pool(infra.database_url, schema)
    yield pool
    await pool.close()
    conn = await asyncpg.connect(infra.database_url)
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


class History:
    """Builds envelopes the way the services would: per-aggregate versions, a clock moving on."""

    def __init__(self) -> None:
        self.versions: Counter[str] = Counter()
        self.now = T0

    def envelope(self, payload: EventPayload, after: timedelta = timedelta(minutes=1),
                 actor: str = "api_key:tests") -> Envelope:
        self.now += after
        subject = next(getattr(payload, f) for f in ("principal_id", "user_id", "admin_id", "system_id")
                       if hasattr(payload, f))
        aggregate_id = f"{payload.scope}:{subject}" if hasattr(payload, "scope") else str(subject)
        self.versions[aggregate_id] += 1
        return Envelope(
            event_id=uuid.uuid4(), type=payload.event_type, schema_version=payload.schema_version,
            aggregate_type=payload.aggregate_type, aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id], occurred_at=self.now, correlation_id=uuid.uuid4(),
            actor=actor, payload=payload.model_dump(mode="json"),
        )

    def random(self, rng: random.Random, users: int = 12, steps: int = 240) -> list[Envelope]:
        """Users and systems, then random MFA changes: every reducer, several times per principal."""
        people = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(users)]
        systems = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(3)]
        events: list[EventPayload] = [identity.UserCreated(user_id=p, email=f"u{n}@example.com", name=f"User {n}")
                                      for n, p in enumerate(people)]
        events += [identity.SystemRegistered(system_id=s, name=f"host {n}", kind="linux")
                   for n, s in enumerate(systems)]
        for _ in range(steps):
            events.append(rng.choice(self._changes)(rng, rng.choice(people), rng.choice(systems), self.now))
        return [self.envelope(event) for event in events]

    _changes: list[Callable[[random.Random, uuid.UUID, uuid.UUID, datetime], EventPayload]] = [
        lambda r, p, s, now: mfa.MFARequired(principal_id=p, scope="user_portal", principal_kind="user",
                                             enrollment_days=7, deadline=now + timedelta(days=7)),
        lambda r, p, s, now: mfa.MFARequirementRemoved(principal_id=p, scope="user_portal"),
        lambda r, p, s, now: mfa.EnrollmentExtended(principal_id=p, scope="user_portal", enrollment_days=3,
                                                    deadline=now + timedelta(days=3)),
        lambda r, p, s, now: mfa.MFAReset(principal_id=p, scope="user_portal", enrollment_days=2,
                                          deadline=now + timedelta(days=2), shredded_secret_id=None),
        lambda r, p, s, now: mfa.TOTPEnrolled(principal_id=p, scope="user_portal", secret_id=uuid.uuid4(),
                                              time_step=1, recovery_codes_issued=10),
        lambda r, p, s, now: mfa.TOTPVerified(principal_id=p, scope="user_portal", method="totp", time_step=2,
                                              recovery_codes_left=10),
        lambda r, p, s, now: mfa.EnrollmentPromptDismissed(principal_id=p, scope="user_portal", days_remaining=3),
        lambda r, p, s, now: mfa.EnrollmentPromptDismissed(principal_id=p, scope="user_portal", days_remaining=2),
        lambda r, p, s, now: identity.UserUpdated(user_id=p, email=f"{r.randrange(999)}@example.com", name="Renamed"),
        lambda r, p, s, now: identity.UserDeleted(user_id=p),
        lambda r, p, s, now: identity.SystemMFAEnabled(system_id=s),
        lambda r, p, s, now: identity.SystemMFADisabled(system_id=s),
    ]


@pytest.fixture
def history() -> History:
    return History()


async def handle_all(pool: asyncpg.Pool, envelopes: list[Envelope]) -> None:
    """What the two consumers do with each event: the audit log's, then the read models', one transaction each."""
    for envelope in envelopes:
        for handler in (audit_log.handle_batch, projector.handle_batch):
            async with pool.acquire() as conn, conn.transaction():
                await handler(conn, [envelope], SystemClock())


@pytest.fixture
def handle() -> Callable:
    return handle_all
