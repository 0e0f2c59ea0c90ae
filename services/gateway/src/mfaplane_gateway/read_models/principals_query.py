"""Queries over the principals read model: filters, keyset pages and counts per status."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_contracts.text import plain_text
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.paging import SortType, decode_cursor, page_of

# The SQL twin of mfaplane_contracts.mfa_status.mfa_status; $1 is the clock's now. The column `configured`
# holds whether the principal has set up MFA (its older name, principals_projection.py).
STATUS_SQL = (
    "CASE WHEN configured AND required THEN 'active' WHEN configured THEN 'configured_not_required' "
    "WHEN NOT required THEN 'none' WHEN deadline IS NULL THEN 'required_no_period' "
    "WHEN deadline > $1 THEN 'enrolling' ELSE 'expired' END"
)
SearchText = plain_text(200)  # what a list's `q` looks for in emails and names
SortKey = Literal["email", "name", "deadline"]
SORTS: dict[str, tuple[str, SortType]] = {
    "email": ("lower(email)", "text"),
    "name": ("lower(name)", "text"),
    "deadline": ("COALESCE(deadline, 'infinity'::timestamptz)", "timestamptz"),
}
COLUMNS = (
    "principal_id, kind, email, name, required, configured AS set_up, deadline, enrollment_days, dismissals, "
    f"last_verified_at, login_name, throttled_until, codes_locked, {STATUS_SQL} AS status"
)


@dataclass(frozen=True)
class PrincipalFilter:
    kind: str = "user"
    statuses: tuple[MFAStatus, ...] = ()
    required: bool | None = None
    set_up: bool | None = None
    search: str | None = None

    def where(self, params: list[Any]) -> str:
        """SQL conditions; appends their values to `params` (whose $1 is now)."""

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        conditions = ["NOT deleted", "email IS NOT NULL", f"kind = {bind(self.kind)}"]
        if self.statuses:
            conditions.append(f"({STATUS_SQL}) = ANY({bind([s.value for s in self.statuses])}::text[])")
        if self.required is not None:
            conditions.append(f"required = {bind(self.required)}")
        if self.set_up is not None:
            conditions.append(f"configured = {bind(self.set_up)}")
        if self.search:
            text = bind(containing(self.search))
            email_matches = f"email ILIKE {text}"
            local_part, at, _ = self.search.partition("@")
            if at and local_part:
                # Every user shares the organisation's domain, so the trigrams of a search's domain part are
                # in every row and the trigram index reads nearly all of its entries for them (docs/performance.md,
                # the indexes). The index looks up the part before the '@' only,
                # and `lower(email) LIKE`, which no index serves, checks the whole text on the rows found.
                local = bind(containing(local_part + "@"))
                email_matches = f"(email ILIKE {local} AND lower(email) LIKE lower({text}))"
            conditions.append(f"({email_matches} OR name ILIKE {text})")
        return " AND ".join(conditions)


def set_up_asked(set_up: bool | None, mfa_active: bool | None) -> bool | None:
    """The `set_up` filter, given by its name or by `mfa_active`, the deprecated one; given by both, they agree."""
    if None not in (set_up, mfa_active) and set_up != mfa_active:
        raise Rejected("conflicting_filters", "`set_up` and `mfa_active`, its deprecated name, disagree: give "
                                              "`set_up` only.", Refusal.UNPROCESSABLE)
    return mfa_active if set_up is None else set_up


def containing(text: str) -> str:
    """The LIKE pattern of `text` anywhere, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def listing(kind: str, sort: SortKey) -> str:
    """What a cursor is good for: the list of one kind of principal in one order."""
    return f"{kind}/{sort}"


async def page(conn: asyncpg.Connection | asyncpg.Pool, table: str, now: datetime, flt: PrincipalFilter,
               sort: SortKey, limit: int, cursor: str | None) -> tuple[list[asyncpg.Record], str | None]:
    expression, sql_type = SORTS[sort]
    params: list[Any] = [now]
    where = flt.where(params)
    this_listing = listing(flt.kind, sort)
    if cursor:
        params += decode_cursor(cursor, this_listing, sql_type)
        where += f" AND ({expression}, principal_id) > (${len(params) - 1}::{sql_type}, ${len(params)})"
    params.append(limit + 1)
    # The page's keys first, then its rows: the keys query names only columns the email index holds, so
    # it can be an index-only scan (a search matching many users tests thousands of entries for a page).
    keys = (f"SELECT principal_id, {expression} AS sort_value FROM {table} WHERE {where} "
            f"ORDER BY {expression}, principal_id LIMIT ${len(params)}")
    rows = await _fetch(
        conn, f"SELECT {COLUMNS}, page.sort_value FROM ({keys}) AS page JOIN {table} USING (principal_id) "
        f"ORDER BY page.sort_value, principal_id", params, custom_plan=bool(flt.search),
    )
    return page_of(rows, limit, this_listing, lambda row: (row["sort_value"], row["principal_id"]))


async def status_counts(conn: asyncpg.Connection | asyncpg.Pool, table: str, now: datetime,
                        flt: PrincipalFilter) -> dict[MFAStatus, int]:
    params: list[Any] = [now]
    where = flt.where(params)
    rows = await _fetch(conn, f"SELECT {STATUS_SQL} AS status, count(*) AS n FROM {table} WHERE {where} GROUP BY 1",
                        params, custom_plan=bool(flt.search))
    counts = dict.fromkeys(MFAStatus, 0)
    counts.update({MFAStatus(row["status"]): row["n"] for row in rows})
    return counts


async def _fetch(conn: asyncpg.Connection | asyncpg.Pool, sql: str, params: list[Any], *,
                 custom_plan: bool) -> list[asyncpg.Record]:
    """Runs a query; with `custom_plan`, planned for its own parameter values every time.

    How to run a text search depends on how many rows its pattern matches: few (a name, an email) want
    the trigram indexes, many want the walk in sort order. After five runs of a prepared statement
    (asyncpg caches them) PostgreSQL may switch to one generic plan for every pattern, and a generic
    plan walks the sort order: a search matching a single user then reads every row (docs/performance.md).
    """
    if not custom_plan:
        return await conn.fetch(sql, *params)
    acquire = conn.acquire() if isinstance(conn, asyncpg.Pool) else contextlib.nullcontext(conn)
    async with acquire as connection, connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return await connection.fetch(sql, *params)


async def one(conn: asyncpg.Connection | asyncpg.Pool, table: str, now: datetime, kind: str,
              principal_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {table} WHERE principal_id = $2 AND kind = $3 AND NOT deleted "
        "AND email IS NOT NULL", now, principal_id, kind,
    )
