"""The envelope every event travels in, on the bus and in every event store."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """Base of every contract model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventPayload(Message):
    """A typed event body. Subclasses name their type and current schema version."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str]
    topic: ClassVar[str]


class BatchProof(Message):
    """Where an event sits in the batch its publisher signed: the inclusion proof of RFC 9162."""

    index: int = Field(ge=0)
    size: int = Field(ge=1)
    path: list[str]  # base64 of each sibling hash, from the event's leaf up to the root


class Envelope(Message):
    # A field a newer producer adds to the envelope is kept, not refused: the publisher's signature
    # covers it, so a copy written on (the audit log) must still hold it to verify.
    model_config = ConfigDict(frozen=True, extra="allow")

    event_id: uuid.UUID
    type: str
    schema_version: int = Field(ge=1)
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int = Field(ge=1)
    occurred_at: datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    command_id: uuid.UUID | None = None
    actor: str
    payload: dict[str, Any]
    # Set by the publishing service's outbox relay: its key's id, its Ed25519 signature (base64) of the
    # root of the Merkle tree over the batch the event was published in, and the proof that the event
    # (`signing_input`) is a leaf of that tree. None while the event is only stored.
    key_id: str | None = None
    signature: str | None = None
    proof: BatchProof | None = None

    def body(self) -> EventPayload:
        """The payload as its typed model, upcast to the current schema version."""
        from mfaplane_contracts.registry import decode_payload

        return decode_payload(self.type, self.schema_version, self.payload)


def canonical(document: dict[str, Any]) -> str:
    """One text for a JSON document, whoever serialised it: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


SIGNING_CONTEXT = b"mfaplane event v1\n"
BATCH_CONTEXT = b"mfaplane event batch v1\n"  # what a publisher's key signs: this, then a batch's root
_PROOF_FIELDS = ("signature", "proof")


def signing_input(document: dict[str, Any]) -> bytes:
    """What an event's leaf in its batch's tree covers: every field of the envelope but the signature
    and the proof, the key id included."""
    return SIGNING_CONTEXT + canonical({k: v for k, v in document.items() if k not in _PROOF_FIELDS}).encode()
