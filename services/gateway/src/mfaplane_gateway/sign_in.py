"""Sign-in to the user portal and the admin portal (rules 7 and 11), called by a portal's API key.

Step one checks the password and answers by the principal's MFA status:
`signed_in` (no MFA required), `mfa_required` (a code is needed: step two),
`enrollment_prompt` (set up now or dismiss, with the days remaining), `setup_required`
(required with no period: set up before continuing), `locked_out` (enrollment expired).
The admin portal runs the same flow on the admin's own enrollment (scope `admin_portal`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from mfaplane_contracts.commands import TotpCode
from mfaplane_eventing.service import Runtime, RuntimeDep
from mfaplane_gateway.auth import Portal
from mfaplane_gateway.forwarding import ForwarderDep
from mfaplane_gateway.sessions import Challenge, Tokens

Outcome = Literal["signed_in", "mfa_required", "enrollment_prompt", "setup_required", "locked_out"]
SIGN_IN_ACTOR = "gateway:sign-in"
LOCKED_OUT_REASON = ("Your MFA enrollment period has ended. An administrator can extend it, reset your MFA or "
                     "remove the requirement.")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(Body):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=256)


class ChallengeBody(Body):
    challenge: str = Field(min_length=1, max_length=1000)


class CodeBody(ChallengeBody):
    code: str = TotpCode


class SessionBody(Body):
    session: str = Field(min_length=1, max_length=1000)


class SignInAnswer(BaseModel):
    outcome: Outcome
    challenge: str | None = Field(default=None, description="for the next step; short-lived")
    session: str | None = Field(default=None, description="the signed-in session token")
    days_remaining: int | None = None
    deadline: datetime | None = None
    reason: str | None = None


class SetupAnswer(BaseModel):
    key_text: str = Field(description="the key in groups of four, to type into an authenticator app")
    otpauth_uri: str
    qr_svg: str
    qr_png_base64: str


class SetupComplete(SignInAnswer):
    recovery_codes: list[str] = Field(description="shown once; store them safely")


class SessionInfo(BaseModel):
    principal_id: uuid.UUID
    kind: str
    expires_at: datetime


async def tokens(request: Request) -> Tokens:
    return request.app.state.tokens


TokensDep = Annotated[Tokens, Depends(tokens)]


def sign_in_router(kind: str, scope: str, prefix: str, tag: str) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[tag])

    async def signed_in(runtime: Runtime, tokens: Tokens, principal_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
        session = await tokens.open_session(runtime.pool, principal_id, kind, runtime.clock.now())
        return {"outcome": "signed_in", "session": session, **extra}

    def enrollment_path(challenge: Challenge, action: str = "") -> str:
        return f"/enrollments/{scope}/{challenge.principal_id}" + (f"/{action}" if action else "")

    @router.post("/sign-in")
    async def sign_in(body: Credentials, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                      forward: ForwarderDep) -> SignInAnswer:
        principal = await forward.send("identity", "POST", "/authenticate", SIGN_IN_ACTOR,
                                       {"kind": kind, "email": body.email, "password": body.password})
        principal_id = uuid.UUID(principal["principal_id"])
        view = await forward.send("mfa", "GET", f"/enrollments/{scope}/{principal_id}", SIGN_IN_ACTOR)

        def challenge(purpose: str) -> str:
            return tokens.challenge(principal_id, kind, principal["email"], purpose)

        match view["status"]:
            case "active":
                return SignInAnswer(outcome="mfa_required", challenge=challenge("code"))
            case "enrolling":
                return SignInAnswer(outcome="enrollment_prompt", challenge=challenge("prompt"),
                                    days_remaining=view["days_remaining"], deadline=view["deadline"])
            case "required_no_period":
                return SignInAnswer(outcome="setup_required", challenge=challenge("setup"))
            case "expired":
                return SignInAnswer(outcome="locked_out", deadline=view["deadline"], reason=LOCKED_OUT_REASON)
        return SignInAnswer(**await signed_in(runtime, tokens, principal_id))

    @router.post("/verify")
    async def verify(body: CodeBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                     forward: ForwarderDep) -> SignInAnswer:
        challenge = tokens.read_challenge(body.challenge, kind, ("code",))
        # A fresh command id every time: a verification is never "the same request again".
        await forward.send("mfa", "POST", enrollment_path(challenge, "verify"), f"{kind}:{challenge.principal_id}",
                           {"code": body.code})
        return SignInAnswer(**await signed_in(runtime, tokens, challenge.principal_id))

    @router.post("/dismiss-prompt")
    async def dismiss_prompt(body: ChallengeBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                             forward: ForwarderDep) -> SignInAnswer:
        challenge = tokens.read_challenge(body.challenge, kind, ("prompt",))
        answer = await forward.send("mfa", "POST", enrollment_path(challenge, "dismiss-prompt"),
                                    f"{kind}:{challenge.principal_id}")
        return SignInAnswer(**await signed_in(runtime, tokens, challenge.principal_id,
                                              days_remaining=answer["days_remaining"]))

    @router.post("/setup/begin")
    async def begin_setup(body: ChallengeBody, _: Portal, tokens: TokensDep, forward: ForwarderDep) -> SetupAnswer:
        challenge = tokens.read_challenge(body.challenge, kind, ("prompt", "setup"))
        answer = await forward.send("mfa", "POST", enrollment_path(challenge, "begin-setup"),
                                    f"{kind}:{challenge.principal_id}", {"account": challenge.email})
        return SetupAnswer(**{field: answer[field] for field in SetupAnswer.model_fields})

    @router.post("/setup/confirm")
    async def confirm_setup(body: CodeBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                            forward: ForwarderDep) -> SetupComplete:
        challenge = tokens.read_challenge(body.challenge, kind, ("prompt", "setup"))
        answer = await forward.send("mfa", "POST", enrollment_path(challenge, "confirm-setup"),
                                    f"{kind}:{challenge.principal_id}", {"code": body.code})
        return SetupComplete(**await signed_in(runtime, tokens, challenge.principal_id),
                             recovery_codes=answer["recovery_codes"])

    @router.post("/session")
    async def session(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep) -> SessionInfo:
        row = await tokens.session(runtime.pool, body.session, kind, runtime.clock.now())
        return SessionInfo(principal_id=row["principal_id"], kind=row["kind"], expires_at=row["expires_at"])

    @router.post("/sign-out", status_code=204)
    async def sign_out(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep) -> None:
        now = runtime.clock.now()
        row = await tokens.session(runtime.pool, body.session, kind, now)
        await tokens.end(runtime.pool, row["session_id"], now)

    return router


user_portal = sign_in_router("user", "user_portal", "/v1/portal", "user portal sign-in")
admin_portal = sign_in_router("admin", "admin_portal", "/v1/admin-portal", "admin portal sign-in")
