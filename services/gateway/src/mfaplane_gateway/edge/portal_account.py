"""The signed-in user's own account in the user portal: who they are and where their MFA stands, setting
MFA up from the home page during enrollment, and a new set of recovery codes for a code from their app.

Each call names the user by their session only; the mfa service hears the user as the actor.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import mfa_api
from mfaplane_contracts.commands import AppCode
from mfaplane_contracts.mfa_api import EnrollmentView
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.auth import Portal
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.rate_limits import CHALLENGE_LIMIT, RATE_LIMITED_RESPONSE
from mfaplane_gateway.edge.sessions import Tokens
from mfaplane_gateway.edge.sign_in import SessionBody, TokensDep
from mfaplane_gateway.read_models.registry import LIVE_TABLES

SCOPE = "user_portal"
PERIOD_STATUSES = (MFAStatus.ENROLLING, MFAStatus.EXPIRED)
APP_CODE = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$",
                 description="the 6-digit code the authenticator app shows (a recovery code is no proof of the app)")

router = APIRouter(prefix="/v1/portal", tags=["user portal account"], responses=RATE_LIMITED_RESPONSE)


class MFAOverview(BaseModel):
    status: MFAStatus
    deadline: datetime | None = Field(description="the end of the enrollment period while enrolling, or when it "
                                                  "ended (expired)")
    days_remaining: int | None = Field(description="while enrolling: whole days left, a started day counted")
    recovery_codes_left: int = Field(description="unused recovery codes; 0 until MFA is set up")
    throttled_until: datetime | None = Field(description="codes are refused unheard until then, after wrong ones")
    locked: bool = Field(description="too many wrong codes: only an administrator's MFA reset unlocks it")


class Account(BaseModel):
    user_id: uuid.UUID
    name: str | None = Field(description="null only for a moment after the account is created")
    email: str | None
    session_expires_at: datetime
    mfa: MFAOverview


class SetupChallenge(BaseModel):
    challenge: str = Field(description="for POST /v1/portal/setup/begin and /setup/confirm, as at sign-in")


class NewRecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="shown once; every earlier recovery code stops working")


class SessionAppCode(SessionBody):
    code: str = APP_CODE


async def _signed_in(runtime: Runtime, tokens: Tokens, session: str) -> tuple[Any, uuid.UUID]:
    row = await tokens.session(runtime.pool, session, "user", runtime.clock.now())
    return row, row["principal_id"]


async def _profile(runtime: Runtime, user_id: uuid.UUID) -> Any:
    """The user's name and email from the read model (None for a moment after the account is created)."""
    return await runtime.pool.fetchrow(f"SELECT name, email FROM {LIVE_TABLES['principals']} WHERE principal_id = $1",
                                       user_id)


async def _enrollment(forward: Forwarder, user_id: uuid.UUID) -> EnrollmentView:
    return await forward.call(mfa_api.VIEW, f"user:{user_id}", scope=SCOPE, principal_id=user_id)


@router.post("/account", summary="The signed-in user's account and MFA status")
async def account(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                  forward: ForwarderDep) -> Account:
    """The signed-in user's name and MFA: status, deadline and days left while enrolling, recovery codes
    left, and whether codes are paused or locked after wrong ones. What a portal's home page shows."""
    row, user_id = await _signed_in(runtime, tokens, body.session)
    profile = await _profile(runtime, user_id)
    view = await _enrollment(forward, user_id)
    return Account(user_id=user_id, name=profile and profile["name"], email=profile and profile["email"],
                   session_expires_at=row["expires_at"],
                   mfa=_overview(view))


def _overview(view: EnrollmentView) -> MFAOverview:
    fields = {field: getattr(view, field) for field in MFAOverview.model_fields}
    # The enrollment keeps the last period's deadline after setup; it means nothing once MFA is set up.
    if view.status not in PERIOD_STATUSES:
        fields["deadline"] = None
    return MFAOverview(**fields)


@router.post("/setup/challenge", summary="A challenge to set up MFA while signed in")
async def setup_challenge(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                          forward: ForwarderDep) -> SetupChallenge:
    """Sets up MFA from the home page ("set up now" after dismissing the prompt): trades the session for a
    setup challenge, which continues as the sign-in's setup step (setup/begin, setup/confirm) and opens a
    new session when the first code is confirmed. Refused once MFA is set up or the period has ended."""
    row, user_id = await _signed_in(runtime, tokens, body.session)
    view = await _enrollment(forward, user_id)
    if view.set_up:
        raise Rejected("already_set_up", "MFA is already set up.")
    if view.status == MFAStatus.EXPIRED:
        raise Rejected("enrollment_expired", "The enrollment period has ended; an administrator must extend it, "
                       "reset MFA or remove the requirement.", Refusal.FORBIDDEN)
    profile = await _profile(runtime, user_id)
    now = runtime.clock.now()
    challenge = tokens.challenge(user_id, "user", profile["email"] if profile else "", "setup", now)
    await tokens.end(runtime.pool, row["session_id"], now)
    return SetupChallenge(challenge=challenge)


@router.post("/recovery-codes", dependencies=[CHALLENGE_LIMIT])
async def new_recovery_codes(body: SessionAppCode, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                             forward: ForwarderDep) -> NewRecoveryCodes:
    """A new set of recovery codes, for a code from the authenticator app: shown once in this answer, and
    every earlier recovery code, used or not, stops working. The code is checked, used up and throttled
    as at sign-in (a wrong one counts towards the pause; the one just used is refused as
    `code_already_used`)."""
    _, user_id = await _signed_in(runtime, tokens, body.session)
    answer = await forward.call(mfa_api.REGENERATE_RECOVERY_CODES, f"user:{user_id}", AppCode(code=body.code),
                                scope=SCOPE, principal_id=user_id)
    return NewRecoveryCodes(recovery_codes=answer.recovery_codes)
