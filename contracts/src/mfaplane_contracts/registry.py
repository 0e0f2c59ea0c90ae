"""Every event type by name, and the upcasters that keep old schema versions readable.

An event stored at schema version N is read by applying the upcasters for N, N+1, ... until the
current version is reached, so history written years ago still decodes into today's model.

Reading is tolerant in one direction only. Fields the model does not know are dropped, so a
producer may add an optional field before every consumer knows it. A version newer than the model
is another matter: its fields may mean something else, so it is not guessed at but refused with
`NewerSchemaVersion`, and a consumer waits for its own upgrade (consumer.py). Any change to a
published schema is a new version with an upcaster from the one before (generate.py keeps every
published version and refuses to rewrite one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from mfaplane_contracts import identity_events, mfa_events
from mfaplane_contracts.envelope import EventPayload


class UnknownEventType(ValueError):
    pass


class UnknownSchemaVersion(ValueError):
    pass


class NewerSchemaVersion(UnknownSchemaVersion):
    """Written by a producer that is newer than this reader: readable once the reader is upgraded."""


def _payload_types() -> dict[str, type[EventPayload]]:
    found: dict[str, type[EventPayload]] = {}
    for module in (identity_events, mfa_events):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, EventPayload) and "event_type" in vars(obj):
                found[obj.event_type] = obj
    return found


EVENT_TYPES: dict[str, type[EventPayload]] = _payload_types()

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (event type, from version) -> function returning the payload at version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("EnrollmentExpiring", 1): mfa_events.timer_event_v1_to_v2,
    ("EnrollmentExpired", 1): mfa_events.timer_event_v1_to_v2,
}


def decode_payload(event_type: str, schema_version: int, payload: dict[str, Any]) -> EventPayload:
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise UnknownEventType(event_type)
    if schema_version > model.schema_version:
        raise NewerSchemaVersion(f"{event_type} v{schema_version} is newer than v{model.schema_version}")
    for version in range(schema_version, model.schema_version):
        upcast = UPCASTERS.get((event_type, version))
        if upcast is None:
            raise UnknownSchemaVersion(f"no upcaster for {event_type} v{version}")
        payload = upcast(payload)
    try:
        return model.model_validate(payload)  # the usual case, at the cost it always had (bench replay)
    except ValidationError as error:
        if not any(e["type"] == "extra_forbidden" for e in error.errors()):
            raise
    return model.model_validate({name: value for name, value in payload.items() if name in model.model_fields})
