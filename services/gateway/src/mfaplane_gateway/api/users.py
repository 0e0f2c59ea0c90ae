"""The users collection of the public API (/v1/users): create, change and delete users, their MFA status
lists, counts and CSV export."""

from __future__ import annotations

import csv
import io
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api
from mfaplane_contracts.identity_api import UserChanges
from mfaplane_contracts.identity_events import LoginName
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_gateway.api.principals import (
    NewPrincipal,
    Principal,
    one_principal,
    principal_filter,
    principal_of_row,
    principals_page,
)
from mfaplane_gateway.api.receipts import Receipt, receipt
from mfaplane_gateway.api.shapes import ConsistentWith, IdempotencyKey, PageRequestDep
from mfaplane_gateway.edge.auth import Admin, Reader
from mfaplane_gateway.edge.forwarding import ForwarderDep
from mfaplane_gateway.edge.sessions import end_now
from mfaplane_gateway.read_models import principals_query, read_your_writes
from mfaplane_gateway.read_models.principals_query import PrincipalFilter, SortKey
from mfaplane_gateway.read_models.registry import LIVE_TABLES

router = APIRouter(prefix="/v1")


class NewUser(NewPrincipal):
    login_name: LoginName | None = Field(default=None, description="the user's login on protected systems (the Unix "
                                                                   "login an SSH agent reports); unique")


class User(Principal):
    login_name: str | None


class UserPage(BaseModel):
    items: list[User]
    next_cursor: str | None


UserFilterDep = Annotated[PrincipalFilter, Depends(principal_filter("user"))]


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
                user = principal_of_row(row, now, User).model_dump(mode="json")
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
