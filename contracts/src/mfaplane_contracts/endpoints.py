"""An internal endpoint as its caller and its service both see it: where it is, what it takes, what it
answers and which command it carries.

The gateway calls identity and mfa through these (its `Forwarder.call`), and the services declare their
routes from the same objects, so a path, a request model or an answer model is written once and a
change to one shows on both sides of the hop. A command's id is derived from who sent it, the
command, the aggregate it is about and the client's Idempotency-Key (`command_id`), never from a URL:
two routes to one command, or a path that changes between versions, keep a retry idempotent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter

AnswerT = TypeVar("AnswerT")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_IDEMPOTENCY_NAMESPACE = uuid.UUID("2b7e9f4c-5d1a-4c3e-8f6b-9a0d1e2c3b4a")


class Answer(BaseModel):
    """A service's answer. Read tolerantly: a field a newer service adds is ignored by an older caller
    (a rolling upgrade updates the services one at a time)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Problem(Answer):
    """RFC 9457 problem details; `code` is the stable identifier that `type` ends with."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class Request(BaseModel):
    """What a caller sends. Strict: a field the service does not know is the caller's mistake."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Endpoint(Generic[AnswerT]):
    service: Literal["identity", "mfa"]
    method: Method
    path: str  # a template: "/enrollments/{scope}/{principal_id}/require"
    answer: type[AnswerT]
    takes: type[BaseModel] | None = None
    command: str | None = None  # the command it carries (part of the command id); None for a query
    aggregate: str = ""  # a template of the aggregate the command is about; "" for one it creates

    def url(self, params: dict[str, Any]) -> str:
        return self.path.format(**params)

    def read(self, content: bytes) -> AnswerT:
        return self._answers.validate_json(content)

    @cached_property
    def _answers(self) -> TypeAdapter[AnswerT]:
        return TypeAdapter(self.answer)

    def command_id(self, actor: str, params: dict[str, Any], idempotency_key: str | None) -> uuid.UUID:
        """A client's Idempotency-Key, scoped to who sent it, the command and its aggregate; a new id
        without one (every call is a new command)."""
        if idempotency_key is None or self.command is None:
            return uuid.uuid4()
        return command_id(actor, self.command, self.aggregate.format(**params), idempotency_key)


def command_id(actor: str, command: str, aggregate: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{actor}|{command}|{aggregate}|{idempotency_key}")
