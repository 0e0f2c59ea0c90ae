"""Users' login names on protected systems, set in bulk: a JSON list, or a CSV file with `id` and
`login_name` columns, such as /v1/users.csv exported, filled in and sent back (its other columns are
ignored; an empty `login_name` means none).

Every row is checked before anything is sent, so a malformed file writes nothing; then each user is
changed on their own (piecewise.py): a name another user holds fails that row alone.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from pydantic import Field, ValidationError

from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.identity_events import LoginName
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.shapes import Body
from mfaplane_gateway.bulk.piecewise import MAX_ITEMS, BulkResult, apply_each
from mfaplane_gateway.edge.auth import Admin
from mfaplane_gateway.edge.forwarding import ForwarderDep

router = APIRouter(prefix="/v1", tags=["users"])
PATH = "/v1/users/login-names"
CSV_PATH = "/v1/users/login-names.csv"
ROW_BYTES = 512  # a users.csv row is under 300 bytes
MAX_REQUEST_BYTES = MAX_ITEMS * ROW_BYTES


class LoginNameOf(Body):
    user_id: uuid.UUID
    login_name: LoginName | None = Field(description="null: the user has none")


class LoginNames(Body):
    items: list[LoginNameOf] = Field(min_length=1, max_length=MAX_ITEMS)


@router.post(PATH.removeprefix("/v1"))
async def set_login_names(body: LoginNames, caller: Admin, runtime: RuntimeDep, forward: ForwarderDep) -> BulkResult:
    """Sets each user's login name on their own: one refused (`login_name_taken`, `user_not_found`) leaves the
    others set. A user named twice is changed once, by the last item."""
    def change(item: LoginNameOf) -> Callable[[], Awaitable[CommandReceipt]]:
        return lambda: forward.call(identity_api.UPDATE_USER, caller.actor,
                                    identity_api.UserChanges(login_name=item.login_name), user_id=item.user_id)

    last = {item.user_id: item for item in body.items}
    return await apply_each(runtime, ((user_id, change(item)) for user_id, item in last.items()))


CSV_EXAMPLE = ("id,email,login_name\r\n0b6f1c52-8a3e-4d07-9e51-3c2a7d94f6b1,ada.lovelace@example.com,ada\r\n"
               "5d2e8f31-1b4c-4a96-8f0e-7a3b9c6d2e45,alan.turing@example.com,\r\n")


@router.post(CSV_PATH.removeprefix("/v1"), openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {
    "schema": {"type": "string", "description": "a header row naming at least `id` and `login_name`, then a row "
                                                "per user"},
    "example": CSV_EXAMPLE}}}})
async def set_login_names_from_csv(request: Request, caller: Admin, runtime: RuntimeDep,
                                   forward: ForwarderDep) -> BulkResult:
    """The same as a CSV file: /v1/users.csv, exported, filled in and sent back, does (an empty `login_name`:
    none)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "text/csv":
        raise Rejected("unsupported_media_type", "Send the file as text/csv.", Refusal.UNSUPPORTED_MEDIA_TYPE)
    try:
        body = LoginNames.model_validate({"items": _csv_rows(await request.body())})
    except ValidationError as invalid:
        error = invalid.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise Rejected("invalid_login_names", f"{where}: {error['msg']}; nothing was changed.",
                       Refusal.UNPROCESSABLE) from None
    return await set_login_names(body, caller, runtime, forward)


def _csv_rows(body: bytes) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise Rejected("invalid_login_names", "The CSV is not readable UTF-8 CSV; nothing was changed.",
                       Refusal.UNPROCESSABLE) from None
    if not {"id", "login_name"} <= set(reader.fieldnames or ()):
        raise Rejected("invalid_login_names", "The CSV needs a header row with `id` and `login_name` columns; "
                       "nothing was changed.", Refusal.UNPROCESSABLE)
    return [{"user_id": row["id"], "login_name": row["login_name"] or None} for row in rows]
