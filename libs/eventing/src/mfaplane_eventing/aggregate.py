"""What an aggregate is here: pure functions over events, no I/O.

`decide(state, command, ...) -> list[EventPayload]` checks a command against the state and returns
the events it causes, or raises `Rejected`; `apply(state, event) -> state` folds one event in.
The command handler around them loads events, decides, and appends with the loaded version as
the expected version, so a concurrent writer gets a conflict instead of a lost update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from mfaplane_contracts.envelope import Envelope, EventPayload

S = TypeVar("S")


class Rejected(Exception):
    """A command refused by a domain rule. `code` is stable: clients and docs rely on it."""

    def __init__(self, code: str, detail: str, status: int = 409, **extra: object) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.extra = extra


def fold(apply: Callable[[S, EventPayload], S], initial: S, events: Iterable[EventPayload]) -> S:
    state = initial
    for event in events:
        state = apply(state, event)
    return state


def replayer(apply: Callable[[S, EventPayload], S], initial: S) -> Callable[[Iterable[Envelope]], S]:
    """The state after a stored history, each event decoded (and upcast) first."""
    return lambda history: fold(apply, initial, (envelope.body() for envelope in history))
