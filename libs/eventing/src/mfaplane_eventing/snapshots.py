"""Snapshots: an aggregate's state saved every so many events, so that loading it reads only the tail.

Why. A command loads its aggregate's whole history and folds it. Most histories stay short, but an
MFA enrollment gains an event at every sign-in: a user who signs in twice a day has a thousand
events after a year and a half, and folding them (decoding each envelope and its payload) cost
about 18 ms of CPU per sign-in, where the rest of a verification costs about 4 (docs/performance.md).
So every `every` events the command handler saves the state it has just computed, and loads read
the latest snapshot and only the events after its version.

Why a snapshot can be trusted. One is written only by a command whose append succeeded at the
version it loaded: its state is then exactly the fold of events 1..v, nothing else could have
been appended in between. It is written after the commit, on its own: if that write fails, the
next command that finds the tail long enough writes one.

When code changes. A snapshot is the output of `apply` at the time it was taken. Each carries a key
naming the state type, its fields (so a field added, removed or retyped changes the key by itself)
and a version the aggregate sets, to be raised whenever `apply` or an upcaster starts giving a
different state for the same events. A loader ignores a snapshot with another key and folds the
whole history, as without snapshots, and the next command writes a snapshot under the new key. So a
rolling upgrade only costs full loads until then, and deleting snapshots loses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

S = TypeVar("S")


@dataclass(frozen=True)
class Snapshot:
    """A state saved at an aggregate version, as JSON."""

    version: int
    state: dict[str, Any]


@dataclass(frozen=True)
class Snapshots(Generic[S]):
    """How an aggregate whose state is the dataclass `state_type` is snapshotted."""

    state_type: type[S]
    version: int = 1  # raise it when apply gives another state for the same events
    every: int = 20  # at most this many events are folded after the latest snapshot

    @cached_property
    def _adapter(self) -> TypeAdapter:
        return TypeAdapter(self.state_type)

    @cached_property
    def key(self) -> str:
        shape = ",".join(f"{f.name}:{f.type}" for f in dataclasses.fields(self.state_type))  # type: ignore[arg-type]
        return f"{self.state_type.__name__}/v{self.version}/{hashlib.sha256(shape.encode()).hexdigest()[:12]}"

    def due(self, taken_at: int, version: int) -> bool:
        """Whether an aggregate now at `version`, last snapshotted at `taken_at` (0: never), needs a new one."""
        return version - taken_at >= self.every

    def dump(self, state: S) -> dict[str, Any]:
        return self._adapter.dump_python(state, mode="json")

    def load(self, snapshot: Snapshot) -> S:
        return self._adapter.validate_python(snapshot.state)
