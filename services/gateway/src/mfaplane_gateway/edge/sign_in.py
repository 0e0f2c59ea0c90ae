"""Sign-in to the user portal and the admin portal (rules 7 and 11), called by a portal's API key.

Step one checks the password and answers by the principal's MFA status:
`signed_in` (no MFA required), `mfa_required` (a code is needed: step two),
`enrollment_prompt` (set up now or dismiss, with the days remaining), `setup_required`
(required with no period: set up before continuing), `locked_out` (enrollment expired).
The admin portal runs the same flow on the admin's own enrollment (scope `admin_portal`), except
that while ADMIN_MFA_REQUIRED is on (the default) every admin needs a code: one with MFA set up
is asked for it, one without must set it up before any session, whatever their enrollment says.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import identity_api, mfa_api
from mfaplane_contracts.commands import Code, TotpCode
from mfaplane_contracts.identity_api import SignInCheck
from mfaplane_contracts.mfa_api import EnrollmentView
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.shapes import Body
from mfaplane_gateway.edge import rate_limits
from mfaplane_gateway.edge.auth import Portal
from mfaplane_gateway.edge.forwarding import Forwarder, ForwarderDep
from mfaplane_gateway.edge.rate_limits import CHALLENGE_LIMIT, RATE_LIMITED_RESPONSE, SIGN_IN_LIMIT, ClientSource
from mfaplane_gateway.edge.sessions import Challenge, Tokens
from mfaplane_gateway.sso import sign_ins

Outcome = Literal["signed_in", "mfa_required", "enrollment_prompt", "setup_required", "locked_out"]
SIGN_IN_ACTOR = "gateway:sign-in"
LOCKED_OUT_REASON = ("Your MFA enrollment period has ended. An administrator can extend it, reset your MFA or "
                     "remove the requirement.")


class Credentials(Body):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=256)
    application_sign_in: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="user portal: the `sign_in` parameter the identity provider put on the portal's address when "
                    "an application sent the user to sign in; the sign-in then ends back at the application "
                    "(`redirect_to`), without a portal session")


class ChallengeBody(Body):
    challenge: str = Field(min_length=1, max_length=1000)


class ChallengeCode(ChallengeBody):
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
    method: Literal["totp", "recovery_code"] | None = Field(
        default=None, description="verify: how the code was checked; after a recovery code, see recovery_codes_left")
    recovery_codes_left: int | None = Field(default=None, description="verify: unused recovery codes left")
    redirect_to: str | None = Field(default=None, description="signed in to an application: where the browser goes "
                                                               "next (back to the application)")


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
    mfa_verified_at: datetime | None = Field(description="when a code was last checked for this session; "
                                                         "null: signed in without one")


def session_info(row: Any, **changes: Any) -> SessionInfo:
    return SessionInfo(**{**{field: row[field] for field in SessionInfo.model_fields}, **changes})


# An admin's enrollment status as the admin console treats it while every admin must use MFA.
ADMIN_MFA_STATUS = {"configured_not_required": "active", "none": "required_no_period",
                    "enrolling": "required_no_period"}
ADMIN_MFA_REASON = "Every admin signs in to the admin console with multi-factor authentication."


async def tokens(request: Request) -> Tokens:
    return request.app.state.tokens


TokensDep = Annotated[Tokens, Depends(tokens)]


def sign_in_router(kind: str, scope: str, prefix: str, tag: str) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[tag], responses=RATE_LIMITED_RESPONSE)

    async def redeemed(runtime: Runtime, tokens: Tokens, challenge: Challenge, code_checked: bool, request: Request,
                       forward: Forwarder, **extra: Any) -> dict[str, Any]:
        """The session the challenge gives, or for a sign-in to an application the way back to it."""
        if challenge.application_sign_in is None:
            session = await tokens.redeem(runtime.pool, challenge, runtime.clock.now(), code_checked)
            return {"outcome": "signed_in", "session": session, **extra}
        to = await sign_ins.resume(runtime, request.app.state.sso, forward, challenge.application_sign_in)
        await tokens.redeem_without_session(runtime.pool, challenge)
        redirect = await sign_ins.finish(runtime, to, forward, challenge.principal_id, challenge.email, code_checked,
                                         await rate_limits.client_source(request))
        return {"outcome": "signed_in", "redirect_to": redirect, **extra}

    def status(view: EnrollmentView, runtime: Runtime) -> tuple[str, str | None]:
        """The status sign-in acts on, and why it differs from the enrollment's, if it does."""
        if kind == "admin" and runtime.settings.admin_mfa_required and view.status in ADMIN_MFA_STATUS:
            return ADMIN_MFA_STATUS[view.status], ADMIN_MFA_REASON
        return view.status, None

    async def step_two(token: str, purposes: tuple[str, ...], runtime: Runtime, tokens: Tokens) -> Challenge:
        """The challenge, if it may still be used: unredeemed, and not cut off (which a deletion does too)."""
        challenge = tokens.read_challenge(token, kind, purposes)
        await tokens.check_redeemable(runtime.pool, challenge)
        return challenge

    @router.post("/sign-in", dependencies=[SIGN_IN_LIMIT], summary="Sign in: email and password")
    async def sign_in(body: Credentials, source: ClientSource, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                      forward: ForwarderDep, request: Request) -> SignInAnswer:
        to = await _application_sign_in(body, runtime, request, forward)
        checked_at = runtime.clock.now()
        principal = await forward.call(identity_api.AUTHENTICATE, SIGN_IN_ACTOR,
                                       SignInCheck(kind=kind, email=body.email, password=body.password, source=source))
        principal_id = principal.principal_id
        view = await forward.call(mfa_api.VIEW, SIGN_IN_ACTOR, scope=scope, principal_id=principal_id)

        def challenge(purpose: str) -> str:
            return tokens.challenge(principal_id, kind, principal.email, purpose, checked_at,
                                    to.token if to is not None else None)

        match sign_ins.status_for(to, *status(view, runtime)):
            case "active", reason:
                return SignInAnswer(outcome="mfa_required", challenge=challenge("code"), reason=reason)
            case "enrolling", _:
                return SignInAnswer(outcome="enrollment_prompt", challenge=challenge("prompt"),
                                    days_remaining=view.days_remaining, deadline=view.deadline)
            case "required_no_period", reason:
                return SignInAnswer(outcome="setup_required", challenge=challenge("setup"), reason=reason)
            case "expired", _:
                if to:
                    await sign_ins.record(forward, principal_id, to, "refused", "locked_out", False, source)
                return SignInAnswer(outcome="locked_out", deadline=view.deadline, reason=LOCKED_OUT_REASON)
        if to:
            redirect = await sign_ins.finish(runtime, to, forward, principal_id, principal.email, False, source)
            return SignInAnswer(outcome="signed_in", redirect_to=redirect)
        session = await tokens.open_session(runtime.pool, principal_id, kind, runtime.clock.now(), checked_at)
        return SignInAnswer(outcome="signed_in", session=session)

    async def _application_sign_in(body: Credentials, runtime: Runtime, request: Request,
                                   forward: Forwarder) -> sign_ins.ApplicationSignIn | None:
        if body.application_sign_in is None:
            return None
        if kind != "user":
            raise Rejected("not_for_applications", "Applications sign users in through the user portal.",
                           Refusal.INVALID)
        return await sign_ins.resume(runtime, request.app.state.sso, forward, body.application_sign_in)

    @router.post("/verify", dependencies=[CHALLENGE_LIMIT], summary="Sign in: check a code")
    async def verify(body: ChallengeCode, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                     forward: ForwarderDep, request: Request) -> SignInAnswer:
        challenge = await step_two(body.challenge, ("code",), runtime, tokens)
        # A fresh command id every time: a verification is never "the same request again".
        checked = await forward.call(mfa_api.VERIFY, f"{kind}:{challenge.principal_id}", Code(code=body.code),
                                     scope=scope, principal_id=challenge.principal_id)
        return SignInAnswer(**await redeemed(runtime, tokens, challenge, True, request, forward,
                                             method=checked.method, recovery_codes_left=checked.recovery_codes_left))

    @router.post("/dismiss-prompt", dependencies=[CHALLENGE_LIMIT], summary="Sign in: set up MFA later")
    async def dismiss_prompt(body: ChallengeBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                             forward: ForwarderDep, request: Request) -> SignInAnswer:
        challenge = await step_two(body.challenge, ("prompt",), runtime, tokens)
        answer = await forward.call(mfa_api.DISMISS_PROMPT, f"{kind}:{challenge.principal_id}", scope=scope,
                                    principal_id=challenge.principal_id)
        return SignInAnswer(**await redeemed(runtime, tokens, challenge, False, request, forward,
                                             days_remaining=answer.days_remaining, deadline=answer.deadline))

    @router.post("/setup/begin", dependencies=[CHALLENGE_LIMIT], summary="Begin MFA setup: QR code and key")
    async def begin_setup(body: ChallengeBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                          forward: ForwarderDep) -> SetupAnswer:
        challenge = await step_two(body.challenge, ("prompt", "setup"), runtime, tokens)
        answer = await forward.call(mfa_api.BEGIN_SETUP, f"{kind}:{challenge.principal_id}",
                                    mfa_api.Setup(account=challenge.email), scope=scope,
                                    principal_id=challenge.principal_id)
        return SetupAnswer(**{field: getattr(answer, field) for field in SetupAnswer.model_fields})

    @router.post("/setup/confirm", dependencies=[CHALLENGE_LIMIT], summary="Confirm MFA setup with a first code")
    async def confirm_setup(body: ChallengeCode, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                            forward: ForwarderDep, request: Request) -> SetupComplete:
        challenge = await step_two(body.challenge, ("prompt", "setup"), runtime, tokens)
        answer = await forward.call(mfa_api.CONFIRM_SETUP, f"{kind}:{challenge.principal_id}", Code(code=body.code),
                                    scope=scope, principal_id=challenge.principal_id)
        return SetupComplete(**await redeemed(runtime, tokens, challenge, True, request, forward),
                             recovery_codes=answer.recovery_codes)

    @router.post("/session", summary="Read a session")
    async def session(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep) -> SessionInfo:
        row = await tokens.session(runtime.pool, body.session, kind, runtime.clock.now())
        return session_info(row)

    @router.post("/sign-out", status_code=204)
    async def sign_out(body: SessionBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep) -> None:
        now = runtime.clock.now()
        row = await tokens.session(runtime.pool, body.session, kind, now)
        await tokens.end(runtime.pool, row["session_id"], now)

    return router


user_portal = sign_in_router("user", "user_portal", "/v1/portal", "user portal sign-in")
admin_portal = sign_in_router("admin", "admin_portal", "/v1/admin-portal", "admin portal sign-in")


class ApplicationSignInBody(Body):
    application_sign_in: str = Field(min_length=1, max_length=200)


class ApplicationToSignInTo(BaseModel):
    name: str = Field(description="the application's name, to show on the sign-in page")
    mfa_enabled: bool = Field(description="whether a user with MFA set up gives a code: the application's switch, or "
                                          "its request asking for MFA")


@user_portal.post("/application-sign-in", dependencies=[CHALLENGE_LIMIT], summary="The application a sign-in is for")
async def application_to_sign_in_to(body: ApplicationSignInBody, _: Portal, runtime: RuntimeDep,
                                    forward: ForwarderDep, request: Request) -> ApplicationToSignInTo:
    """What the sign-in page shows when an application sent the user to sign in (`?sign_in=` on its address)."""
    to = await sign_ins.resume(runtime, request.app.state.sso, forward, body.application_sign_in)
    return ApplicationToSignInTo(name=to.application.name, mfa_enabled=to.mfa_required)


class StepUpBody(SessionBody):
    code: str = TotpCode


@admin_portal.post("/step-up", dependencies=[CHALLENGE_LIMIT], summary="Step up: check a code again")
async def step_up(body: StepUpBody, _: Portal, runtime: RuntimeDep, tokens: TokensDep,
                  forward: ForwarderDep) -> SessionInfo:
    """The signed-in admin proves their second factor again, before an action that asks for a recent code
    (minting an API key, making an admin). The code is checked and throttled as at sign-in."""
    now = runtime.clock.now()
    row = await tokens.session(runtime.pool, body.session, "admin", now)
    admin = f"admin:{row['principal_id']}"
    await forward.call(mfa_api.VERIFY, admin, Code(code=body.code), scope="admin_portal",
                       principal_id=row["principal_id"])
    await tokens.stepped_up(runtime.pool, row["session_id"], now)
    return session_info(row, mfa_verified_at=now)
