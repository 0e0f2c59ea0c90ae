"""What the gateway answers to an accepted command: the service's receipt plus a consistency token."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from mfaplane_contracts.commands import CommandReceipt
from mfaplane_gateway.read_models import read_your_writes


class Receipt(BaseModel):
    id: uuid.UUID = Field(description="the user, admin, system or API key the command was about: the one in the "
                                      "request's path, or the one it created")
    aggregate_id: str = Field(deprecated=True, description="deprecated (use `id`): the event-sourced record the "
                                                           "events went to, `user_portal:<id>` for a user's MFA")
    version: int
    event_ids: list[uuid.UUID] = Field(description="the events written; none when nothing had to change")
    duplicate: bool = Field(description="the Idempotency-Key was seen before; nothing new was applied")
    consistency_token: str = Field(description="pass as ?consistent_with= to read this change back")


def receipt(answer: CommandReceipt, subject: uuid.UUID | None = None) -> Receipt:
    """The receipt of a service's answer; `subject`: the id the client named, where the events went to a
    record of its own (an enrollment), else the record's id."""
    return Receipt(aggregate_id=answer.aggregate_id, version=answer.version, event_ids=answer.event_ids,
                   duplicate=answer.duplicate, id=subject or answer.aggregate_id,
                   consistency_token=read_your_writes.token(answer.aggregate_id, answer.version))
