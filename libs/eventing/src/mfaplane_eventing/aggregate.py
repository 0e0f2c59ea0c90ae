"""What an aggregate is here: pure functions over events, no I/O.

`decide(state, command, ...) -> list[EventPayload]` checks a command against the state and returns
the events it causes, or raises `Rejected`; `apply(state, event) -> state` folds one event in.
The command handler around them loads events, decides, and appends with the loaded version as
the expected version, so a concurrent writer gets a conflict instead of a lost update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from mfaplane_contracts.envelope import EventPayload
from mfaplane_eventing.snapshots import Snapshot, Snapshots

if TYPE_CHECKING:
    from mfaplane_eventing.event_store import History

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


class Replayer(Generic[S]):
    """The state after a stored history: its snapshot's state if it has one (see snapshots.py), then
    each event after it, decoded (and upcast) first."""

    def __init__(self, apply: Callable[[S, EventPayload], S], initial: S,
                 snapshots: Snapshots[S] | None = None) -> None:
        self.apply = apply
        self.initial = initial
        self.snapshots = snapshots
        self.snapshot_key = snapshots.key(apply) if snapshots else None

    def __call__(self, history: History) -> S:
        start = self.snapshots.load(history.snapshot) if self.snapshots and history.snapshot else self.initial
        return fold(self.apply, start, (envelope.body() for envelope in history.events))

    def snapshot_after(self, history: History, state: S, events: Sequence[EventPayload],
                       version: int) -> Snapshot | None:
        """A snapshot at `version`, if one is due, of `state` (the state at `history`) with `events` applied."""
        if self.snapshots is None or not self.snapshots.due(history.snapshot_version, version):
            return None
        return Snapshot(version, self.snapshots.dump(fold(self.apply, state, events)))

