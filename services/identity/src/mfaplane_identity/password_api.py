"""Passwords changed by their owners and reset through mailed links (NIST SP 800-63B), for the gateway.

A change is three calls the gateway makes in turn: the owner's current password checked here (the
same per-email and per-source slots as a sign-in), their code checked by mfa when their MFA is
active, then the new password set here. A reset is requested by an admin and mailed by the notifier
as a link whose token only the notifier and identity can make (reset_tokens.py); redeeming it sets
the new password once. Either way the event is the principal's PasswordChanged, which ends their
sessions (the gateway), and whose moment is answered so the gateway can keep the session that made it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends

from mfaplane_chassis import endpoints
from mfaplane_chassis.request_context import CauseDep
from mfaplane_chassis.service import Runtime, RuntimeDep
from mfaplane_contracts import identity_api as contract
from mfaplane_contracts import reset_tokens
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_api import (
    ExistingPrincipal,
    Kind,
    NewPassword,
    PasswordCheck,
    PasswordSet,
    ResetRedemption,
    ResetRequested,
)
from mfaplane_contracts.identity_events import AdminPasswordResetRequested, UserPasswordResetRequested
from mfaplane_eventing.aggregate import Refusal, Rejected, Replayer
from mfaplane_eventing.command_handler import execute, receipt
from mfaplane_eventing.event_store import Cause
from mfaplane_identity import account, password_guard, password_policy, source_guard
from mfaplane_identity.account import Account
from mfaplane_identity.api import QueuedPasswords

router = APIRouter()
serve = functools.partial(endpoints.serve, router)
_accounts = Replayer(account.apply, Account())


async def _source_attempt(body: PasswordCheck, runtime: RuntimeDep) -> AsyncIterator[None]:
    async with source_guard.attempt(runtime, body.source):
        yield


# After the hashing place, as at sign-in (api.py): one refused by either has written nothing.
SourceAttempt = Annotated[None, Depends(_source_attempt, scope="function")]


@serve(contract.CHECK_PASSWORD)
async def check_password(kind: Kind, principal_id: uuid.UUID, body: PasswordCheck, runtime: RuntimeDep,
                         pw: QueuedPasswords, _: SourceAttempt) -> ExistingPrincipal:
    """The principal's own password, checked as a sign-in checks it: a wrong one counts toward the lockout
    of its email and toward its source's limit."""
    row = await runtime.pool.fetchrow("SELECT email, password_hash FROM credentials WHERE principal_id = $1 "
                                      "AND kind = $2 AND NOT deleted", principal_id, kind)
    if row is None:
        raise Rejected(f"{kind}_not_found", f"No such {kind}.", Refusal.NOT_FOUND)
    right = await password_guard.PasswordGuard(runtime).checked(
        kind, row["email"], lambda: pw.verify(row["password_hash"], body.password))
    if not right:
        raise Rejected(source_guard.WRONG_PASSWORD, "The current password is wrong.", Refusal.UNAUTHENTICATED)
    return ExistingPrincipal(principal_id=principal_id, kind=kind)


@serve(contract.SET_PASSWORD)
async def set_password(kind: Kind, principal_id: uuid.UUID, body: NewPassword, runtime: RuntimeDep, cause: CauseDep,
                       pw: QueuedPasswords) -> PasswordSet:
    await _refuse_guessable(runtime, principal_id, body.password)
    password_hash = await pw.hash(body.password)
    return await _set(runtime, cause, principal_id, password_hash,
                      lambda state: account.change_password(state, kind, principal_id))


@serve(contract.REQUEST_PASSWORD_RESET, status_code=201)
async def request_reset(kind: Kind, principal_id: uuid.UUID, runtime: RuntimeDep, cause: CauseDep) -> ResetRequested:
    reset_id = uuid.uuid4()
    expires_at = runtime.clock.now() + timedelta(seconds=runtime.settings.password_reset_ttl_seconds)

    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await conn.execute("INSERT INTO password_resets (reset_id, principal_id) VALUES ($1, $2)", reset_id,
                           principal_id)

    result = await execute(runtime.store, str(principal_id), _accounts,
                           lambda state: account.request_password_reset(state, kind, principal_id, reset_id,
                                                                        expires_at), cause, write)
    # From the event: a retried request answers with the moment it set the first time.
    requested = result.events[0].body()
    assert isinstance(requested, UserPasswordResetRequested | AdminPasswordResetRequested)
    return ResetRequested(**receipt(str(principal_id), result).model_dump(), expires_at=requested.expires_at)


@serve(contract.REDEEM_PASSWORD_RESET)
async def redeem_reset(body: ResetRedemption, runtime: RuntimeDep, cause: CauseDep, pw: QueuedPasswords) -> PasswordSet:
    """Sets the password of the reset the token names, if that reset is open. A forged token is refused
    before anything is read, and a used, expired or superseded one before the new password is hashed."""
    reset_id = reset_tokens.reset_id_of(runtime.settings.password_reset_key, body.token)
    if reset_id is None:
        raise account.invalid_reset()
    principal_id = await runtime.pool.fetchval("SELECT principal_id FROM password_resets WHERE reset_id = $1",
                                               reset_id)
    if not principal_id:
        raise account.invalid_reset()

    def redeem(state: Account) -> list[EventPayload]:
        return account.redeem_password_reset(state, body.kind, principal_id, reset_id, runtime.clock.now())

    redeem(_accounts(await runtime.store.history(str(principal_id))))  # a refusal before the hash's cost
    await _refuse_guessable(runtime, principal_id, body.password)
    return await _set(runtime, cause, principal_id, await pw.hash(body.password), redeem)


async def _refuse_guessable(runtime: Runtime, principal_id: uuid.UUID, password: str) -> None:
    email = await runtime.pool.fetchval("SELECT email FROM credentials WHERE principal_id = $1", principal_id)
    await password_policy.refuse_guessable(password, *([email] if email else []))


async def _set(runtime: Runtime, cause: Cause, principal_id: uuid.UUID, password_hash: str,
               decide: Callable[[Account], list[EventPayload]]) -> PasswordSet:
    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await conn.execute("UPDATE credentials SET password_hash = $2 WHERE principal_id = $1", principal_id,
                           password_hash)

    result = await execute(runtime.store, str(principal_id), _accounts, decide, cause, write)
    return PasswordSet(**receipt(str(principal_id), result).model_dump(), changed_at=result.events[0].occurred_at)
