"""What an aggregate is here: pure functions over events, no I/O.

`decide(state, command, ...) -> list[EventPayload]` checks a command against the state and returns
the events it causes, or raises `Rejected`; `apply(state, event) -> state` folds one event in.
The command handler around them loads events, decides, and appends with the loaded version as
the expected version, so a concurrent writer gets a conflict instead of a lost update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, TypeVar

from mfaplane_contracts.envelope import EventPayload
from mfaplane_eventing.snapshots import Snapshot, Snapshots

if TYPE_CHECKING:
    from mfaplane_eventing.event_store import History

S = TypeVar("S")


class Refusal(StrEnum):
    """What kind of refusal a `Rejected` is, in the domain's words; only the edge (problems.py) turns it
    into an HTTP status."""

    INVALID = "invalid"  # cannot be taken as sent: malformed, breaking a rule, or naming what is no longer valid
    UNAUTHENTICATED = "unauthenticated"  # who is asking is not established: a credential missing, wrong or expired
    FORBIDDEN = "forbidden"  # who is asking is known, but may not do this
    NOT_FOUND = "not_found"  # what the request names does not exist
    CONFLICT = "conflict"  # the current state forbids it: the usual refusal of a command
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # the body is in a format (Content-Type) the route does not read
    UNPROCESSABLE = "unprocessable"  # well-formed, but what it says cannot be used (a bad URL, a bad CSV row)
    LOCKED = "locked"  # locked after too many failures, until an administrator acts
    THROTTLED = "throttled"  # too many attempts or requests for now; `retry_after` says when to come back
    NOT_READY = "not_ready"  # not possible yet: a change still being applied, or a feature not set up here


class Rejected(Exception):
    """A command or request refused by a rule. `code` is stable: clients and docs rely on it; `kind` says
    what sort of refusal it is (an HTTP status only at the edge)."""

    def __init__(self, code: str, detail: str, kind: Refusal = Refusal.CONFLICT, **extra: object) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.kind = kind
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

