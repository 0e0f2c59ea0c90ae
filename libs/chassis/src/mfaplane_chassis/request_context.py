"""Who is asking: from the calling service's signed token (service_auth.py), never from a header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from mfaplane_chassis.service_auth import CallDep
from mfaplane_eventing.event_store import Cause


async def cause(call: CallDep) -> Cause:
    return Cause(actor=call.actor, correlation_id=call.correlation_id, command_id=call.command_id)


CauseDep = Annotated[Cause, Depends(cause)]
