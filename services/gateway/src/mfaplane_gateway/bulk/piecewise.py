"""A bulk change made item by item through the owning service: each item is its own command, so one
refused leaves the others applied. The systems' MFA switch and users' login names change this way
(few items, each a small command); MFA requirements for many users go through bulk.py's worker."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable

from pydantic import BaseModel, Field

from mfaplane_chassis.service import Runtime
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_eventing.aggregate import Rejected
from mfaplane_gateway.read_models import read_your_writes

MAX_ITEMS = 1000


class BulkResult(BaseModel):
    changed: list[uuid.UUID] = Field(description="changed by this request")
    unchanged: list[uuid.UUID] = Field(description="already as asked; nothing was written for them")
    failed: dict[uuid.UUID, str] = Field(description="refused, with the problem code")
    consistency_token: str = Field(description="one token for every item above: pass it as ?consistent_with= "
                                               "to read them back (for a day; after that it waits for nothing)")


async def apply_each(runtime: Runtime,
                     items: Iterable[tuple[uuid.UUID, Callable[[], Awaitable[CommandReceipt]]]]) -> BulkResult:
    """Sends each item's command in turn; a service that is down stops the rest, as it would each one."""
    bulk_id = uuid.uuid4()
    result = BulkResult(changed=[], unchanged=[], failed={}, consistency_token=read_your_writes.bulk_token(bulk_id))
    versions: list[tuple[str, int]] = []
    for item_id, send in items:
        try:
            answer = await send()
        except Rejected as refused:  # an outage (ServiceUnavailable) stops the rest
            result.failed[item_id] = refused.code
            continue
        (result.changed if answer.event_ids else result.unchanged).append(item_id)
        versions.append((answer.aggregate_id, answer.version))
    await read_your_writes.record_set(runtime.pool, bulk_id, runtime.clock.now(), versions)
    return result
