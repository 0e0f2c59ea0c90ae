"""What the public API's routes share: the request headers and parameters every list and command
takes, and the base of every request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query
from pydantic import BaseModel, ConfigDict

from mfaplane_gateway.read_models.principals_query import SortKey

IdempotencyKey = Annotated[str | None, Header(max_length=200, description="Apply a retried request once")]
ConsistentWith = Annotated[
    list[str] | None,
    Query(max_length=20, description="consistency_token values of receipts or bulk results to wait for (bounded) "
                                     "before reading"),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class PageRequest:
    sort: SortKey
    limit: int
    cursor: str | None


# Every list pages the same way: `limit` items at most, then `next_cursor` to pass as `cursor` (null: the last page).
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=500)]


async def page_request(sort: SortKey = "email", limit: Limit = 50, cursor: Cursor = None) -> PageRequest:
    return PageRequest(sort, limit, cursor)


PageRequestDep = Annotated[PageRequest, Depends(page_request)]


