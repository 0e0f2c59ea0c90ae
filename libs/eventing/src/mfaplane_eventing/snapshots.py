"""Snapshots: an aggregate's state saved every so many events, so that loading it reads only the tail.

Why. A command loads its aggregate's whole history and folds it. Most histories stay short, but an
MFA enrollment gains an event at every sign-in, and folding a year of daily sign-ins costs several
times the rest of a verification (bench `signin --earlier-sign-ins`, docs/performance.md). So every
`every` events the command handler saves the state it has just computed, and loads read the latest
snapshot and only the events after its version.

Why a snapshot can be trusted. One is written only by a command whose append succeeded at the
version it loaded: its state is then exactly the fold of events 1..v, nothing else could have
been appended in between. It is written after the commit, on its own, and a failure to write it
is only logged: the next command that finds the tail long enough writes one.

When code changes. A snapshot is the output of `apply` at the time it was taken, so it is stored
under a key naming that code: the state type, its JSON schema (every field and nested type), the
source of the module holding `apply`, and a version the aggregate sets by hand. The version is for
what the key cannot see: an upcaster starting to read an old event differently. A loader reads only
snapshots under its own key; without one it folds the whole history, as if there were no snapshots,
and its next command writes one. So an upgrade costs one full load per aggregate, old and new code
keep their own snapshots side by side during a rolling upgrade, and deleting snapshots loses nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
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
    version: int = 1  # raise it when an upcaster gives another state for the same events
    every: int = 20  # about this many events are folded after the latest snapshot, at most

    @cached_property
    def _adapter(self) -> TypeAdapter[S]:
        return TypeAdapter(self.state_type)

    def key(self, apply: Callable[..., Any]) -> str:
        """The key of snapshots made by `apply` (see the module docstring)."""
        module = inspect.getmodule(apply)
        assert module is not None, "an apply function is defined in a module"
        code = json.dumps(self._adapter.json_schema(), sort_keys=True) + inspect.getsource(module)
        return f"{self.state_type.__name__}/v{self.version}/{hashlib.sha256(code.encode()).hexdigest()[:16]}"

    def due(self, snapshot_version: int, version: int) -> bool:
        """Whether an aggregate now at `version`, last snapshotted at `snapshot_version` (0: never), needs one."""
        return version - snapshot_version >= self.every

    def dump(self, state: S) -> dict[str, Any]:
        dumped: dict[str, Any] = self._adapter.dump_python(state, mode="json")
        return dumped

    def load(self, snapshot: Snapshot) -> S:
        return self._adapter.validate_python(snapshot.state)
