"""Keyset pages, the same for every list: a page is read one item past its `limit`, and when that item
exists the page's `next_cursor` names the list and the sort value and id of the page's last item; the
next page starts after them. A cursor is checked before any query runs."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from mfaplane_eventing.aggregate import Refusal, Rejected

SortType = Literal["text", "timestamptz"]
T = TypeVar("T")
# 'infinity' as asyncpg reads and writes a timestamptz: the one moment without a time zone a cursor holds.
INFINITY = datetime.max


def pack(listing: str, *values: Any) -> str:
    """An opaque cursor: what it is good for (`listing`: one list in one order) and where it stands."""
    return base64.urlsafe_b64encode(json.dumps([listing, *values]).encode()).decode().rstrip("=")


def unpack(cursor: str, listing: str) -> list[Any]:
    """The values of a cursor `pack` made for `listing`; another list's, or not base64 or JSON, is refused."""
    try:
        match json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))):
            case [str(of), *values] if of == listing:
                return values
    except ValueError:
        pass
    raise invalid_cursor()


def invalid_cursor() -> Rejected:
    return Rejected("invalid_cursor", "The cursor is not one this list returned.", Refusal.INVALID)


def encode_cursor(listing: str, sort_value: Any, item_id: uuid.UUID) -> str:
    value = sort_value.isoformat() if isinstance(sort_value, datetime) else sort_value
    return pack(listing, value, str(item_id))


def decode_cursor(cursor: str, listing: str, sort_type: SortType) -> tuple[Any, uuid.UUID]:
    """The sort value and id in a cursor of `listing`; anything else (another list's cursor, a value of
    the wrong type, a moment without its time zone, not base64 or JSON) is refused with 400."""
    try:
        match unpack(cursor, listing):
            case [str(value), str(item_id)]:
                return _sort_value(value, sort_type), uuid.UUID(item_id)
    except (ValueError, OverflowError):  # OverflowError: a moment beyond the calendar's ends in UTC
        pass
    raise invalid_cursor()


def _sort_value(value: str, sort_type: SortType) -> Any:
    if sort_type == "timestamptz":
        moment = datetime.fromisoformat(value)
        if moment == INFINITY:
            return moment
        if moment.tzinfo is None:
            raise ValueError("a moment without its time zone")
        return moment.astimezone(UTC)
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot hold NUL")
    value.encode()  # a lone surrogate is no UTF-8 (UnicodeEncodeError is a ValueError)
    return value


def page_of(items: Sequence[T], limit: int, listing: str,
            position: Callable[[T], tuple[Any, uuid.UUID]]) -> tuple[list[T], str | None]:
    """The page in `items` (read up to one past `limit`) and the next page's cursor, None on the last
    page; `position` gives an item's sort value and id."""
    if len(items) <= limit:
        return list(items), None
    return list(items[:limit]), encode_cursor(listing, *position(items[limit - 1]))
