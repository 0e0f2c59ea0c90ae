"""Given events, when a decision, then events (or a refusal): the harness of the aggregate tests, in the
shape of mfa's. Identity's decide functions raise `Rejected` instead of returning a decision, so `when`
catches it for `rejected` to look at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

from mfaplane_contracts.envelope import EventPayload
from mfaplane_eventing.aggregate import Refusal, Rejected, fold
from mfaplane_identity import account, api_keys, system

S = TypeVar("S")


@dataclass(frozen=True)
class Then(Generic[S]):
    events: list[EventPayload]
    rejection: Rejected | None
    state: S  # after the decision's events

    def then(self, *events: EventPayload) -> Then[S]:
        assert self.rejection is None, f"refused: {self.rejection.code}"
        assert self.events == list(events)
        return self

    def rejected(self, code: str, kind: Refusal) -> Rejected:
        assert self.rejection is not None, f"accepted with {self.events}"
        assert (self.rejection.code, self.rejection.kind) == (code, kind)
        return self.rejection


@dataclass(frozen=True)
class Given(Generic[S]):
    apply: Callable[[S, EventPayload], S]
    state: S

    def when(self, decide: Callable[..., list[EventPayload]], *args: Any) -> Then[S]:
        try:
            events = decide(self.state, *args)
        except Rejected as rejection:
            return Then([], rejection, self.state)
        return Then(events, None, fold(self.apply, self.state, events))


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    apply: Callable[[S, EventPayload], S]
    initial: S

    def given(self, *events: EventPayload) -> Given[S]:
        return Given(self.apply, fold(self.apply, self.initial, events))


@pytest.fixture
def accounts() -> Aggregate[account.Account]:
    return Aggregate(account.apply, account.Account())


@pytest.fixture
def systems() -> Aggregate[system.System]:
    return Aggregate(system.apply, system.System())


@pytest.fixture
def keys() -> Aggregate[api_keys.ApiKey]:
    return Aggregate(api_keys.apply, api_keys.ApiKey())
