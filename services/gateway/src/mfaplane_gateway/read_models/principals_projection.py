"""Reducers from events to the principals and resources read models, and how runs of events are written.

Topics are not ordered with respect to each other, so an enrollment event can arrive before the
UserCreated it belongs to: every reducer upserts, touching only its own columns. A row's updated_at,
which every event touches, is the latest occurred_at of its events whatever order they came in: the
projection and the audit log (which a replay applies in its own order) are consumed apart.

A run of events (the live projector's one event, or a replay's chunk of thousands) is folded in
memory into one net change per row, in seq order, then written with one upsert per row: the
same rows as applying each event's upsert in turn, with a statement per row instead of per event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from mfaplane_contracts import identity_events as identity
from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.enrollment_summary import SETS
from mfaplane_contracts.envelope import EventPayload

Value = Callable[[datetime, EventPayload], Any]  # (occurred_at, body) -> the column's new value
KEY_FIELDS = ("principal_id", "user_id", "admin_id", "system_id")
KEYS = {"principals": "principal_id", "resources": "system_id"}
# The column of a field whose name the read model's tables predate (docs/glossary.md): a gateway of the
# previous release reads and writes the tables in use beside the new one during a rolling upgrade.
_COLUMN_OF = {"set_up": "configured"}
# A principal's deletion (identity's topic) and its enrollment's events (mfa's) are not ordered with
# respect to each other, and the projection and the audit log's replay may meet them in either order:
# so a deletion clears these columns for good, and an enrollment event after it leaves them cleared.
CLEARED_BY_DELETION = ("required", "set_up")
_CLEARED_COLUMNS = {_COLUMN_OF.get(name, name) for name in CLEARED_BY_DELETION}


class _Increment:
    """A column the event adds one to (the count of a new row starts at the column default, 0)."""


INCREMENT = _Increment()


def event_field(name: str) -> Value:
    return lambda occurred_at, body: getattr(body, name)


def constant(value: Any) -> Value:
    return lambda occurred_at, body: value


def occurred(occurred_at: datetime, body: EventPayload) -> datetime:
    return occurred_at


@dataclass(frozen=True)
class Reducer:
    model: str  # the read model whose row, keyed by the event's subject, the event upserts
    columns: dict[str, Value | _Increment]


def _principals(**columns: Value | _Increment) -> Reducer:
    return Reducer("principals", columns)


def _resources(**columns: Value | _Increment) -> Reducer:
    return Reducer("resources", columns)


def _enrollment(payload: type[EventPayload], **columns: Value | _Increment) -> Reducer:
    """The enrollment summary's fields the event sets (contracts' one fold of them), and `columns`."""
    summary = {name: _of_body(value) for name, value in SETS[payload].items()}
    return _principals(**summary, **columns)


def _of_body(value: Callable[[Any], Any]) -> Value:
    return lambda occurred_at, body: value(body)


_email, _name, _days = event_field("email"), event_field("name"), event_field("enrollment_days")
REDUCERS: dict[type[EventPayload], Reducer] = {
    identity.UserCreated: _principals(kind=constant("user"), email=_email, name=_name),
    identity.AdminCreated: _principals(kind=constant("admin"), email=_email, name=_name),
    identity.UserUpdated: _principals(email=_email, name=_name),
    identity.UserLoginNameChanged: _principals(login_name=event_field("login_name")),
    identity.UserDeleted: _principals(deleted=constant(True), required=constant(False), set_up=constant(False),
                                      login_name=constant(None)),
    identity.AdminDeleted: _principals(deleted=constant(True), required=constant(False), set_up=constant(False)),
    mfa.MFARequired: _enrollment(mfa.MFARequired, enrollment_days=_days),
    mfa.MFARequirementRemoved: _enrollment(mfa.MFARequirementRemoved, enrollment_days=constant(None)),
    mfa.EnrollmentExtended: _enrollment(mfa.EnrollmentExtended, enrollment_days=_days),
    mfa.MFAReset: _enrollment(mfa.MFAReset, enrollment_days=_days, dismissals=constant(0),
                              throttled_until=constant(None), codes_locked=constant(False)),
    mfa.TOTPThrottled: _principals(throttled_until=event_field("until")),
    mfa.TOTPFactorLocked: _principals(codes_locked=constant(True)),
    mfa.TOTPEnrolled: _enrollment(mfa.TOTPEnrolled),
    mfa.TOTPVerified: _principals(last_verified_at=occurred),
    mfa.EnrollmentPromptDismissed: _principals(dismissals=INCREMENT),
    identity.SystemRegistered: _resources(name=_name, kind=event_field("kind")),
    identity.SystemMFAEnabled: _resources(mfa_enabled=constant(True)),
    identity.SystemMFADisabled: _resources(mfa_enabled=constant(False)),
    identity.SystemRenamed: _resources(name=_name),
    identity.SystemDeleted: _resources(deleted=constant(True)),
}
HANDLED_TYPES = frozenset(payload.event_type for payload in REDUCERS)
# The field naming the row each event type upserts (hasattr on a pydantic model costs an exception).
_SUBJECT = {payload: next(f for f in KEY_FIELDS if f in payload.model_fields) for payload in REDUCERS}


@dataclass
class _RowChange:
    updated_at: datetime | None = None
    values: dict[str, Any] = field(default_factory=dict)  # columns set, last event wins
    increments: dict[str, int] = field(default_factory=dict)  # columns added to since the last set


class Fold:
    """The net change of a run of events to the read-model rows, applied in the order added."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, Any], _RowChange] = {}

    def add(self, occurred_at: datetime, body: EventPayload) -> None:
        reducer = REDUCERS.get(type(body))
        if reducer is None:
            return
        subject = getattr(body, _SUBJECT[type(body)])
        row = self._rows.setdefault((reducer.model, subject), _RowChange())
        row.updated_at = max(occurred_at, row.updated_at or occurred_at)
        for column, value in reducer.columns.items():
            if not isinstance(value, _Increment):
                row.values[column] = value(occurred_at, body)
                row.increments.pop(column, None)
            elif column in row.values:
                row.values[column] += 1
            else:
                row.increments[column] = row.increments.get(column, 0) + 1
        if reducer.model == "principals" and row.values.get("deleted"):
            row.values.update(dict.fromkeys(CLEARED_BY_DELETION, False))

    async def write(self, conn: asyncpg.Connection, tables: dict[str, str]) -> None:
        """Upserts every changed row into `tables` (read model -> table); a fold may be written to several."""
        shapes: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple]] = defaultdict(list)
        for (model, subject), row in self._rows.items():
            sets, adds = tuple(sorted(row.values)), tuple(sorted(row.increments))
            shapes[model, sets, adds].append((subject, row.updated_at, *(row.values[c] for c in sets),
                                              *(row.increments[c] for c in adds)))
        # In key order: projections on other replicas write the same rows, and rows locked in one order
        # by everyone cannot deadlock within a statement.
        for (model, sets, adds), rows in sorted(shapes.items()):
            await conn.executemany(_upsert(tables[model], KEYS[model], sets, adds), sorted(rows, key=_subject))


def _subject(row: tuple) -> Any:
    return row[0]


def _guarded(table: str, column: str) -> str:
    """A deleted principal's MFA columns stay cleared, whichever arrives first (see CLEARED_BY_DELETION)."""
    if column in _CLEARED_COLUMNS:
        return f"EXCLUDED.{column} AND NOT ({table}.deleted OR EXCLUDED.deleted)"
    return f"EXCLUDED.{column}"


def _upsert(table: str, key: str, fields: tuple[str, ...], adds: tuple[str, ...]) -> str:
    sets = tuple(_COLUMN_OF.get(name, name) for name in fields)
    columns = (key, "updated_at", *sets, *adds)
    updates = [f"updated_at = GREATEST({table}.updated_at, EXCLUDED.updated_at)",
               *(f"{c} = {_guarded(table, c)}" for c in sets), *(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in adds)]
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${n}' for n in range(1, len(columns) + 1))}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}")
