"""Who is asking, read from the headers the gateway sets on every forwarded command."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header

from mfaplane_eventing import logs
from mfaplane_eventing.event_store import Cause


async def cause(
    x_actor: Annotated[str, Header(min_length=1, max_length=200)] = "system:unknown",
    x_correlation_id: Annotated[uuid.UUID | None, Header()] = None,
    idempotency_key: Annotated[uuid.UUID | None, Header()] = None,
) -> Cause:
    correlation = x_correlation_id or uuid.uuid4()
    logs.correlation_id.set(str(correlation))
    return Cause(actor=x_actor, correlation_id=correlation, command_id=idempotency_key or uuid.uuid4())


CauseDep = Annotated[Cause, Depends(cause)]
