"""Given events, when a command, then events (or a rejection): the harness every domain test uses."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mfaplane_contracts.commands import Command
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.mfa_events import MFARequired, TOTPEnrolled, TOTPSecretIssued
from mfaplane_eventing.aggregate import Rejected, fold
from mfaplane_mfa import totp
from mfaplane_mfa.enrollment import Decision, Enrollment, apply, decide
from mfaplane_mfa.totp import TOTPSecret


@dataclass(frozen=True)
class Then:
    decision: Decision
    state: Enrollment  # after appending the decision's events, refused or not

    def then(self, *events: EventPayload) -> Then:
        assert self.decision.rejection is None, f"refused: {self.decision.rejection.code}"
        assert list(self.decision.events) == list(events)
        return self

    def rejected(self, code: str, *events: EventPayload) -> Rejected:
        assert self.decision.rejection is not None, f"accepted with {self.decision.events}"
        assert self.decision.rejection.code == code
        assert list(self.decision.events) == list(events)
        assert self.decision.new_secret is None and self.decision.recovery_codes is None
        return self.decision.rejection


@dataclass(frozen=True)
class Given:
    harness: Harness
    state: Enrollment

    def when(self, command: Command, *, now: datetime, **inputs: Any) -> Then:
        decision = self.harness.decide(self.state, command, now=now, **inputs)
        state = self.state
        for event in decision.events:
            state = apply(state, event)
        return Then(decision, state)


class Harness:
    principal_id = uuid.UUID("5f0c1c9e-0000-4000-8000-000000000001")
    scope = "user_portal"
    t0 = datetime(2025, 3, 3, 9, 0, 10, tzinfo=UTC)  # 10 s into a TOTP time step
    secret = TOTPSecret(bytes(range(1, 21)))
    secret_id = uuid.UUID("5f0c1c9e-0000-4000-8000-00000000000a")

    def __init__(self) -> None:
        self._ids = (uuid.UUID(int=n) for n in itertools.count(1))
        self._random = random.Random(1234)

    def new_id(self) -> uuid.UUID:
        return next(self._ids)

    def random_bytes(self, n: int) -> bytes:
        return self._random.randbytes(n)

    def cmd(self, command_type: type[Command], **fields: Any) -> Any:
        return command_type(actor="admin@example.com", principal_id=self.principal_id, scope=self.scope, **fields)

    def ev(self, event_type: type[EventPayload], **fields: Any) -> Any:
        return event_type(principal_id=self.principal_id, scope=self.scope, **fields)

    def code(self, at: datetime, steps: int = 0, secret: TOTPSecret | None = None) -> str:
        return totp.code_at(secret or self.secret, totp.time_step(at) + steps)

    def given(self, *events: EventPayload) -> Given:
        return Given(self, fold(apply, Enrollment(), events))

    def decide(self, state: Enrollment, command: Command, *, now: datetime, **inputs: Any) -> Decision:
        inputs.setdefault("new_id", self.new_id)
        inputs.setdefault("random_bytes", self.random_bytes)
        return decide(state, command, now=now, **inputs)

    # Event histories the tests start from.

    def enrolling(self, days: int = 7, at: datetime | None = None) -> list[EventPayload]:
        start = at or self.t0
        return [
            self.ev(
                MFARequired,
                principal_kind="user",
                enrollment_days=days,
                deadline=start + timedelta(days=days),
            )
        ]

    def set_up(self, at: datetime | None = None, required: bool = True) -> list[EventPayload]:
        """Enrolled with `self.secret`, confirmed with the code of the step of `at`."""
        at = at or self.t0
        return [
            *(self.enrolling(at=at) if required else []),
            self.ev(TOTPSecretIssued, secret_id=self.secret_id),
            self.ev(TOTPEnrolled, secret_id=self.secret_id, time_step=totp.time_step(at), recovery_codes_issued=10),
        ]


@pytest.fixture
def mfa() -> Harness:
    return Harness()
