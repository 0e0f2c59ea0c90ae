"""Users and admins as the public API shows them (one model for both, with their MFA state from the
read model), and the lists and lookups both collections share."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query, Response
from pydantic import BaseModel, Field

from mfaplane_chassis.service import Runtime
from mfaplane_contracts.identity_events import Email
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_contracts.text import DisplayName
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.api_versions import deprecated_shape
from mfaplane_gateway.api.shapes import Body, PageRequest
from mfaplane_gateway.read_models import principals_query, read_your_writes
from mfaplane_gateway.read_models.principals_query import PrincipalFilter, SearchText, set_up_asked
from mfaplane_gateway.read_models.registry import LIVE_TABLES


class NewPrincipal(Body):
    """A new user or admin."""

    email: Email
    name: DisplayName
    password: str = Field(min_length=8, max_length=256)


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


P = TypeVar("P", bound=Principal)  # a user, or an admin


def principal_of_row(row: Any, now: datetime, model: type[P]) -> P:
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


async def principals_page(runtime: Runtime, flt: PrincipalFilter, paging: PageRequest,
                          consistent_with: list[str] | None, model: type[P]) -> tuple[list[P], str | None]:
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    now = runtime.clock.now()
    rows, next_cursor = await principals_query.page(runtime.pool, LIVE_TABLES["principals"], now, flt, paging.sort,
                                                    paging.limit, paging.cursor)
    return [principal_of_row(row, now, model) for row in rows], next_cursor


async def one_principal(runtime: Runtime, kind: str, principal_id: uuid.UUID,
                        consistent_with: list[str] | None, model: type[P]) -> P:
    """The user or admin with this id; another kind's id is not found."""
    await read_your_writes.wait_for(runtime.pool, consistent_with, runtime.settings.read_your_writes_timeout_seconds)
    now = runtime.clock.now()
    row = await principals_query.one(runtime.pool, LIVE_TABLES["principals"], now, kind, principal_id)
    if row is None:
        raise Rejected(f"{kind}_not_found", f"No such {kind}.", Refusal.NOT_FOUND)
    return principal_of_row(row, now, model)
