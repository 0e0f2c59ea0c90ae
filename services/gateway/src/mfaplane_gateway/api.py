"""The public portal API under /v1: admin operations on users, and their MFA status lists."""

from __future__ import annotations

import csv
import io
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts import identity_api
from mfaplane_contracts.identity_api import UserChanges
from mfaplane_contracts.identity_events import Email, LoginName
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_contracts.text import DisplayName
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.service import Runtime, RuntimeDep
from mfaplane_gateway import principals_query, read_your_writes
from mfaplane_gateway.api_versions import deprecated_shape
from mfaplane_gateway.auth import Admin, Reader
from mfaplane_gateway.forwarding import ForwarderDep
from mfaplane_gateway.principals_query import PrincipalFilter, SearchText, SortKey, set_up_asked
from mfaplane_gateway.read_models import LIVE_TABLES
from mfaplane_gateway.receipts import Receipt, receipt
from mfaplane_gateway.sessions import end_now

router = APIRouter(prefix="/v1")
IdempotencyKey = Annotated[str | None, Header(max_length=200, description="Apply a retried request once")]
ConsistentWith = Annotated[
    list[str] | None,
    Query(max_length=20, description="consistency_token values of receipts or bulk results to wait for (bounded) "
                                     "before reading"),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewPrincipal(Body):
    """A new user or admin."""

    email: Email
    name: DisplayName
    password: str = Field(min_length=8, max_length=256)


class NewUser(NewPrincipal):
    login_name: LoginName | None = Field(default=None, description="the user's login on protected systems (the Unix "
                                                                   "login an SSH agent reports); unique")


class Principal(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    status: MFAStatus
    required: bool
    set_up: bool = Field(description="a TOTP key was confirmed with a first code, so a code is asked for at sign-in")
    mfa_active: bool = Field(deprecated=True, description="deprecated (use `set_up`): the same")
    deadline: datetime | None
    time_remaining_seconds: int | None
    enrollment_days: int | None
    dismissals: int
    last_verified_at: datetime | None
    throttled_until: datetime | None = Field(description="code attempts are paused after repeated failures until "
                                                         "then (null: not paused now)")
    codes_locked: bool = Field(description="codes are refused after too many failures, until MFA is reset")


class User(Principal):
    login_name: str | None


class UserPage(BaseModel):
    items: list[User]
    next_cursor: str | None


P = TypeVar("P", bound=Principal)  # a user, or an admin


def _user(row: Any, now: datetime, model: type[P]) -> P:
    remaining = None
    if row["status"] == MFAStatus.ENROLLING:
        remaining = int((row["deadline"] - now).total_seconds())
    return model(
        id=row["principal_id"], email=row["email"], name=row["name"], status=row["status"], required=row["required"],
        set_up=row["set_up"], mfa_active=row["set_up"], deadline=row["deadline"], time_remaining_seconds=remaining,
        enrollment_days=row["enrollment_days"], dismissals=row["dismissals"],
        last_verified_at=row["last_verified_at"], login_name=row["login_name"],  # an admin has none: ignored
        throttled_until=row["throttled_until"] if row["throttled_until"] and row["throttled_until"] > now else None,
        codes_locked=row["codes_locked"],
    )


def principal_filter(kind: str) -> Callable[..., Any]:
    """The list filters, as a dependency, over the principals of `kind`."""

    async def from_query(
        response: Response,
        status: Annotated[list[MFAStatus] | None, Query(description="any of these statuses")] = None,
        required: bool | None = None,
        set_up: bool | None = None,
        mfa_active: Annotated[bool | None, Query(deprecated=True, description=(
            "deprecated (use `set_up`): the same filter, answered with Deprecation and Sunset headers"))] = None,
        q: Annotated[SearchText | None, Query(description="text in email or name")] = None,
    ) -> PrincipalFilter:
        if mfa_active is not None:
            deprecated_shape(response)
        return PrincipalFilter(kind=kind, statuses=tuple(status or ()), required=required,
                               set_up=set_up_asked(set_up, mfa_active), search=q)

    return from_query


UserFilterDep = Annotated[PrincipalFilter, Depends(principal_filter("user"))]


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


async def principals_page(runtime: Runtime, flt: PrincipalFilter, paging: PageRequest,
                          consistent_with: list[str] | None, model: type[P]) -> tuple[list[P], str | None]:
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    now = runtime.clock.now()
    rows, next_cursor = await principals_query.page(runtime.pool, LIVE_TABLES["principals"], now, flt, paging.sort,
                                                    paging.limit, paging.cursor)
    return [_user(row, now, model) for row in rows], next_cursor


async def one_principal(runtime: Runtime, kind: str, principal_id: uuid.UUID,
                        consistent_with: list[str] | None, model: type[P]) -> P:
    """The user or admin with this id; another kind's id is not found."""
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    now = runtime.clock.now()
    row = await principals_query.one(runtime.pool, LIVE_TABLES["principals"], now, kind, principal_id)
    if row is None:
        raise Rejected(f"{kind}_not_found", f"No such {kind}.", Refusal.NOT_FOUND)
    return _user(row, now, model)


@router.post("/users", status_code=201, tags=["users"])
async def create_user(body: NewUser, caller: Admin, forward: ForwarderDep,
                      idempotency_key: IdempotencyKey = None) -> Receipt:
    return receipt(await forward.call(identity_api.CREATE_USER, caller.actor, identity_api.NewUser(**body.model_dump()),
                                      idempotency_key=idempotency_key))


@router.get("/users", tags=["users"])
async def list_users(runtime: RuntimeDep, flt: UserFilterDep, paging: PageRequestDep, caller: Reader,
                     consistent_with: ConsistentWith = None) -> UserPage:
    items, next_cursor = await principals_page(runtime, flt, paging, consistent_with, User)
    return UserPage(items=items, next_cursor=next_cursor)


# `set_up` last: a column added after the others moves none of them (`mfa_active` is deprecated, the same).
CSV_COLUMNS = ("id", "email", "name", "status", "required", "mfa_active", "deadline", "time_remaining_seconds",
               "enrollment_days", "dismissals", "last_verified_at", "login_name", "set_up")
CSV_PAGE = 1000
CSV_EXAMPLE = ",".join(CSV_COLUMNS) + ("\r\n0b6f1c52-8a3e-4d07-9e51-3c2a7d94f6b1,ada.lovelace@example.com,Ada Lovelace,"
                                       "enrolling,True,False,2027-03-15T09:30:00Z,432000,7,1,,ada,False\r\n")


@router.get("/users.csv", tags=["users"], response_class=StreamingResponse, summary="Export users as CSV",
            responses={200: {"content": {"text/csv": {"example": CSV_EXAMPLE}},
                             "description": "every user matching the filter"}})
async def export_users(runtime: RuntimeDep, flt: UserFilterDep, caller: Reader, response: Response,
                       sort: SortKey = "email", consistent_with: ConsistentWith = None):
    """The same filters as the list, as CSV, streamed page by page (constant memory). The column `mfa_active`
    is deprecated: the same as `set_up`, served until the sunset (README, "Versions and deprecations")."""
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)

    async def lines() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        cursor: str | None = ""
        while cursor is not None:
            now = runtime.clock.now()
            rows, cursor = await principals_query.page(runtime.pool, LIVE_TABLES["principals"], now, flt, sort,
                                                       CSV_PAGE, cursor or None)
            for row in rows:
                user = _user(row, now, User).model_dump(mode="json")
                writer.writerow([csv_cell(user[column]) for column in CSV_COLUMNS])
            yield out.getvalue()
            out.seek(0)
            out.truncate()

    return StreamingResponse(lines(), media_type="text/csv",  # with the filter's Deprecation headers, if any
                             headers={**response.headers, "Content-Disposition": 'attachment; filename="users.csv"'})


def csv_cell(value: Any) -> Any:
    """Neutralises spreadsheet formulas in user-supplied text (CSV injection, as OWASP describes it): a
    cell a spreadsheet could read as a formula, also after leading spaces or invisible characters that
    it skips, gets a leading quote."""
    if isinstance(value, str) and _formula_start(value):
        return "'" + value
    return "" if value is None else value


FORMULA_TRIGGERS = frozenset("=+-@\t\r\n")
INVISIBLE = frozenset({"Cc", "Cf"})  # control and format characters (zero-width space, byte order mark)


def _formula_start(text: str) -> bool:
    for character in text:
        if character in FORMULA_TRIGGERS:
            return True
        if not (character.isspace() or unicodedata.category(character) in INVISIBLE):
            return False
    return False


@router.get("/users/status-counts", tags=["users"], summary="Count users by MFA status")
async def user_status_counts(runtime: RuntimeDep, flt: UserFilterDep, caller: Reader,
                             consistent_with: ConsistentWith = None) -> dict[MFAStatus, int]:
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    return await principals_query.status_counts(runtime.pool, LIVE_TABLES["principals"], runtime.clock.now(), flt)


@router.get("/users/{user_id}", tags=["users"])
async def get_user(user_id: uuid.UUID, runtime: RuntimeDep, caller: Reader,
                   consistent_with: ConsistentWith = None) -> User:
    return await one_principal(runtime, "user", user_id, consistent_with, User)


@router.patch("/users/{user_id}", tags=["users"])
async def update_user(user_id: uuid.UUID, body: UserChanges, caller: Admin, forward: ForwarderDep,
                      idempotency_key: IdempotencyKey = None) -> Receipt:
    return receipt(await forward.call(identity_api.UPDATE_USER, caller.actor, body, idempotency_key=idempotency_key,
                                      user_id=user_id))


@router.delete("/users/{user_id}", tags=["users"])
async def delete_user(user_id: uuid.UUID, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep,
                      idempotency_key: IdempotencyKey = None) -> Receipt:
    deleted = receipt(await forward.call(identity_api.DELETE_USER, caller.actor, idempotency_key=idempotency_key,
                                         user_id=user_id))
    await end_now(runtime, user_id)  # its sessions end, and its sign-in challenges are refused, at once
    return deleted
