"""Users created in bulk, such as from a CSV file the admin console reads: a dry run first says what each
row would do, and writes nothing; then each row is created on its own (a command per row, as in
piecewise.py), so a row refused leaves the others created.

A row without a password gets one nobody knows, and the user is mailed a link to set their own (the
link the admin console's "Mail a password reset link" sends). A dry run checks each row's fields, an
email or login name given twice in the request, and those already held by someone in the read model;
identity still has the last word when the rows are created (a user made meanwhile is refused there).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mfaplane_chassis.problems import ServiceUnavailable
from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import identity_api
from mfaplane_eventing.aggregate import Rejected
from mfaplane_gateway.api.shapes import Body
from mfaplane_gateway.api.users import NewUser
from mfaplane_gateway.edge.auth import Admin
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.read_models import read_your_writes
from mfaplane_gateway.read_models.registry import LIVE_TABLES

router = APIRouter(prefix="/v1", tags=["users"])
PATH = "/v1/users/import"
MAX_ROWS = 1000
ROW_BYTES = 1024  # an email, a name, a password and a login name, each well under their limits
MAX_REQUEST_BYTES = MAX_ROWS * ROW_BYTES
IN_FLIGHT = 8  # rows sent to identity at once


class ImportRow(BaseModel):
    """A row as read from the file: every field as text, checked by the import (not by the request's schema),
    so that one bad row is reported with its number instead of refusing the whole request."""

    model_config = ConfigDict(extra="ignore")
    email: str = Field(default="", max_length=400)
    name: str = Field(default="", max_length=400)
    password: str = Field(default="", max_length=400, description="empty: the user is mailed a link to set one")
    login_name: str = Field(default="", max_length=400, description="empty: none")


class ImportRequest(Body):
    rows: list[ImportRow] = Field(min_length=1, max_length=MAX_ROWS)
    dry_run: bool = False


class RowResult(BaseModel):
    row: int = Field(description="the row's index in `rows`, from 0")
    outcome: Literal["create", "created", "invalid", "refused"] = Field(
        description="`create`: a dry run would create it; `created`; `invalid`: a field is wrong, nothing was sent; "
                    "`refused`: identity refused it")
    code: str | None = Field(default=None, description="why not: `invalid_row`, `email_taken`, `login_name_taken`, ...")
    detail: str | None = None
    user_id: str | None = None
    reset_link_mailed: bool = False


class ImportResult(BaseModel):
    rows: list[RowResult]
    consistency_token: str | None = Field(description="pass as ?consistent_with= to read the created users back "
                                                      "(null on a dry run)")


@router.post(PATH.removeprefix("/v1"))
async def import_users(body: ImportRequest, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep) -> ImportResult:
    """Creates a user per row, or with `dry_run` only says what each row would do."""
    checked = await _check(runtime, body.rows)
    if body.dry_run:
        return ImportResult(rows=[result for result, _ in checked], consistency_token=None)
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def create(result: RowResult, user: NewUser | None) -> tuple[RowResult, tuple[str, int] | None]:
        if user is None:
            return result, None
        async with gate:
            return await _create(forward, caller.actor, result, user)

    outcomes = await asyncio.gather(*(create(result, user) for result, user in checked))
    set_id = uuid.uuid4()
    await read_your_writes.record_set(runtime.pool, set_id, runtime.clock.now(),
                                      [version for _, version in outcomes if version is not None])
    return ImportResult(rows=[result for result, _ in outcomes], consistency_token=read_your_writes.bulk_token(set_id))


async def _check(runtime: Runtime, rows: list[ImportRow]) -> list[tuple[RowResult, NewUser | None]]:
    """Each row's result as a dry run gives it, with the user to create when it is valid."""
    emails = [row.email.strip().lower() for row in rows]
    logins = [row.login_name.strip() for row in rows]
    held = await runtime.pool.fetch(
        f"SELECT lower(email) AS email, login_name FROM {LIVE_TABLES['principals']} "
        "WHERE NOT deleted AND (lower(email) = ANY($1::text[]) OR login_name = ANY($2::text[]))",
        [e for e in emails if e], [name for name in logins if name])
    taken_emails = {r["email"] for r in held}
    taken_logins = {r["login_name"] for r in held if r["login_name"]}
    seen_emails: set[str] = set()
    seen_logins: set[str] = set()
    checked: list[tuple[RowResult, NewUser | None]] = []
    for index, row in enumerate(rows):
        try:
            user = _valid(row)
        except ValidationError as invalid:
            checked.append((RowResult(row=index, outcome="invalid", code="invalid_row", detail=_first_error(invalid)),
                            None))
            continue
        email, login = emails[index], logins[index]
        refusal = (("email_taken", "This email is already in use.") if email in taken_emails
                   else ("email_repeated", "This email is on an earlier row.") if email in seen_emails
                   else ("login_name_taken", "This login name is already another user's.") if login in taken_logins
                   else ("login_name_repeated", "This login name is on an earlier row.")
                   if login and login in seen_logins
                   else None)
        seen_emails.add(email)
        if login:
            seen_logins.add(login)
        if refusal:
            checked.append((RowResult(row=index, outcome="invalid", code=refusal[0], detail=refusal[1]), None))
        else:
            checked.append((RowResult(row=index, outcome="create", reset_link_mailed=not row.password), user))
    return checked


def _valid(row: ImportRow) -> NewUser:
    return NewUser.model_validate({
        "email": row.email.strip(), "name": row.name.strip(),
        "password": row.password or secrets.token_urlsafe(32),  # no one knows it: the mailed link sets one
        "login_name": row.login_name.strip() or None,
    })


def _first_error(invalid: ValidationError) -> str:
    error = invalid.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"


async def _create(forward: Forwarder, actor: str, planned: RowResult,
                  user: NewUser) -> tuple[RowResult, tuple[str, int] | None]:
    """Creates one row's user (and mails the link when the row had no password); a refusal, or a service
    not answering, fails this row only."""
    try:
        answer = await forward.call(identity_api.CREATE_USER, actor, identity_api.NewUser(**user.model_dump()))
    except (Rejected, ServiceUnavailable) as refused:
        return RowResult(row=planned.row, outcome="refused", code=refused.code, detail=refused.detail), None
    result = RowResult(row=planned.row, outcome="created", user_id=answer.aggregate_id)
    if planned.reset_link_mailed:
        try:
            await forward.call(identity_api.REQUEST_PASSWORD_RESET, actor, kind="user", principal_id=result.user_id)
            result.reset_link_mailed = True
        except (Rejected, ServiceUnavailable) as refused:
            result.detail = f"Created, but the link to set a password was not mailed: {refused.detail}"
    return result, (answer.aggregate_id, answer.version)
