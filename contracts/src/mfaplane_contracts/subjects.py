"""Whom an event is about: mfa's events name the principal `principal_id`, identity's `user_id` or
`admin_id` (the same id space: an enrollment's principal is the user or admin of that id)."""

from __future__ import annotations

import uuid

from mfaplane_contracts.envelope import EventPayload

PRINCIPAL_FIELDS = ("principal_id", "user_id", "admin_id")


def principal_of(body: EventPayload) -> uuid.UUID:
    principal: uuid.UUID = next(getattr(body, field) for field in PRINCIPAL_FIELDS if hasattr(body, field))
    return principal
