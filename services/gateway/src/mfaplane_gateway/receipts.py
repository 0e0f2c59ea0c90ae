"""What the gateway answers to an accepted command: the service's receipt plus a consistency token."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from mfaplane_gateway import read_your_writes


class Receipt(BaseModel):
    aggregate_id: str
    version: int
    event_ids: list[uuid.UUID]
    duplicate: bool = Field(description="the Idempotency-Key was seen before; nothing new was applied")
    consistency_token: str = Field(description="pass as ?consistent_with= to read this change back")


def receipt(answer: dict[str, Any]) -> Receipt:
    fields = {name: answer[name] for name in ("aggregate_id", "version", "event_ids", "duplicate")}
    return Receipt(**fields, consistency_token=read_your_writes.token(answer["aggregate_id"], answer["version"]))
