"""The identity service's command API, called by the gateway only."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query

from mfaplane_chassis import endpoints
from mfaplane_chassis.request_context import CauseDep
from mfaplane_chassis.service import RuntimeDep
from mfaplane_contracts import identity_api as contract
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_api import (
    ExistingPrincipal,
    IssuedApiKey,
    KeyCheck,
    KeyIdentity,
    KeyStatus,
    Kind,
    ListedApiKey,
    MFASwitch,
    NewApiKey,
    NewPrincipal,
    NewSystem,
    NewUser,
    Principal,
    SignInCheck,
    SystemChanges,
    SystemState,
    UserChanges,
)
from mfaplane_contracts.identity_events import (
    LOGIN_NAME_PATTERN,
    SignInSettings,
    UserLoginNameChanged,
    UserUpdated,
)
from mfaplane_eventing.aggregate import Refusal, Rejected, Replayer
from mfaplane_eventing.command_handler import execute, receipt
from mfaplane_identity import account, api_keys, password_guard, password_policy, source_guard, system
from mfaplane_identity.account import Account
from mfaplane_identity.passwords import Passwords
from mfaplane_identity.system import System

router = APIRouter()
serve = functools.partial(endpoints.serve, router)


@functools.cache
def _passwords(time_cost: int, memory_cost_kib: int, parallelism: int, threads: int, queue: int) -> Passwords:
    return Passwords(time_cost, memory_cost_kib, parallelism, threads, queue)


def passwords_for(s) -> Passwords:
    return _passwords(s.argon2_time_cost, s.argon2_memory_cost_kib, s.argon2_parallelism, s.argon2_threads,
                      s.argon2_queue)


async def passwords(runtime: RuntimeDep) -> Passwords:
    return passwords_for(runtime.settings)


PasswordsDep = Annotated[Passwords, Depends(passwords)]


async def hashing_place(pw: PasswordsDep) -> AsyncIterator[Passwords]:
    with pw.place():
        yield pw


async def source_attempt(body: SignInCheck, runtime: RuntimeDep) -> AsyncIterator[None]:
    async with source_guard.attempt(runtime, body.source):
        yield


# A sign-in's place in the hashing queue, then its source's slot: both before anything of the sign-in
# itself, so one refused by either has written nothing. Both end before the answer is sent.
QueuedPasswords = Annotated[Passwords, Depends(hashing_place, scope="function")]
SourceAttempt = Annotated[None, Depends(source_attempt, scope="function")]


_accounts = Replayer(account.apply, Account())
_systems = Replayer(system.apply, System())
_api_keys = Replayer(api_keys.apply, api_keys.ApiKey())


async def _insert_credentials(conn: asyncpg.Connection, principal_id, kind, email, password_hash,
                              login_name: str | None) -> None:
    async with _unique_names():
        await conn.execute(
            "INSERT INTO credentials (principal_id, kind, email, password_hash, login_name) "
            "VALUES ($1, $2, $3, $4, $5)",
            principal_id, kind, email, password_hash, login_name,
        )


@contextlib.asynccontextmanager
async def _unique_names() -> AsyncIterator[None]:
    """An email or login name another principal has is refused (the unique indexes decide, in the transaction)."""
    try:
        yield
    except asyncpg.UniqueViolationError as taken:
        if taken.constraint_name == "credentials_login_name":
            raise Rejected("login_name_taken", "This login name is already another user's.") from None
        raise Rejected("email_taken", "This email is already in use.") from None


async def new_password_hash(passwords: Passwords, body: NewPrincipal) -> str:
    await password_policy.refuse_guessable(body.password, body.email, body.name)
    return await passwords.hash(body.password)


async def create_principal(store, cause, body: NewPrincipal, kind: str, decide, password_hash: str,
                           login_name: str | None = None) -> CommandReceipt:
    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await _insert_credentials(conn, body.id, kind, body.email, password_hash, login_name)

    result = await execute(store, str(body.id), _accounts,
                           lambda state: decide(state, body.id, body.email, body.name), cause, write)
    return receipt(str(body.id), result)


@serve(contract.CREATE_USER, status_code=201)
async def create_user(body: NewUser, runtime: RuntimeDep, cause: CauseDep, pw: PasswordsDep) -> CommandReceipt:
    decide = functools.partial(account.create_user, login_name=body.login_name)
    return await create_principal(runtime.store, cause, body, "user", decide, await new_password_hash(pw, body),
                                  body.login_name)


@serve(contract.CREATE_ADMIN, status_code=201)
async def create_admin(body: NewPrincipal, runtime: RuntimeDep, cause: CauseDep, pw: PasswordsDep) -> CommandReceipt:
    return await create_principal(runtime.store, cause, body, "admin", account.create_admin,
                                  await new_password_hash(pw, body))


@serve(contract.UPDATE_USER)
async def update_user(user_id: uuid.UUID, body: UserChanges, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    async def write(conn: asyncpg.Connection, events: Sequence[EventPayload]) -> None:
        for event in events:
            if isinstance(event, UserLoginNameChanged):
                column, value = "login_name", event.login_name
            else:
                assert isinstance(event, UserUpdated)  # what account.update_user decides
                column, value = "email", event.email
            async with _unique_names():
                await conn.execute(f"UPDATE credentials SET {column} = $2 WHERE principal_id = $1", user_id, value)

    def decide(state: Account) -> list[EventPayload]:
        renamed = account.update_user(state, user_id, body.email, body.name)
        if "login_name" not in body.model_fields_set:
            return renamed
        return [*renamed, *account.set_login_name(state, user_id, body.login_name)]

    result = await execute(runtime.store, str(user_id), _accounts, decide, cause, write)
    return receipt(str(user_id), result)


@serve(contract.DELETE_USER)
async def delete_user(user_id: uuid.UUID, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await conn.execute("UPDATE credentials SET deleted = true, password_hash = '' WHERE principal_id = $1", user_id)

    result = await execute(runtime.store, str(user_id), _accounts,
                           lambda state: account.delete_user(state, user_id), cause, write)
    return receipt(str(user_id), result)


@serve(contract.DELETE_ADMIN)
async def delete_admin(admin_id: uuid.UUID, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await _refuse_last_admin(conn)
        await conn.execute("UPDATE credentials SET deleted = true, password_hash = '' WHERE principal_id = $1",
                           admin_id)

    result = await execute(runtime.store, str(admin_id), _accounts,
                           lambda state: account.delete_admin(state, admin_id), cause, write)
    return receipt(str(admin_id), result)


async def _refuse_last_admin(conn: asyncpg.Connection) -> None:
    """Locks every live admin's row (in one order: no deadlock), so of two admins deleted at once the
    second waits for the first and then counts without it."""
    admins = await conn.fetch("SELECT principal_id FROM credentials WHERE kind = 'admin' AND NOT deleted "
                              "ORDER BY principal_id FOR UPDATE")
    if len(admins) <= 1:
        raise Rejected("last_admin", "The last admin cannot be deleted: create another admin first.")


@serve(contract.PRINCIPAL_EXISTS)
async def existing_principal(kind: Kind, principal_id: uuid.UUID, runtime: RuntimeDep) -> ExistingPrincipal:
    """Whether a user or admin exists (and is not deleted): the gateway asks before an enrollment
    command, which mfa, knowing no principals, would otherwise accept for any id."""
    if not await runtime.pool.fetchval("SELECT true FROM credentials WHERE principal_id = $1 AND kind = $2 "
                                       "AND NOT deleted", principal_id, kind):
        raise Rejected(f"{kind}_not_found", f"No such {kind}.", Refusal.NOT_FOUND)
    return ExistingPrincipal(principal_id=principal_id, kind=kind)


@serve(contract.END_SESSIONS)
async def end_sessions(kind: Kind, principal_id: uuid.UUID, runtime: RuntimeDep,
                       cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(principal_id), _accounts,
                           lambda state: account.end_sessions(state, kind, principal_id), cause)
    return receipt(str(principal_id), result)


@serve(contract.AUTHENTICATE)
async def authenticate(body: SignInCheck, runtime: RuntimeDep, pw: QueuedPasswords, _: SourceAttempt) -> Principal:
    """Checks a password. Unknown email and wrong password take the same time and give the same answer."""
    row = await runtime.pool.fetchrow(
        "SELECT principal_id, email, password_hash FROM credentials WHERE kind = $1 AND lower(email) = lower($2) "
        "AND NOT deleted",
        body.kind, body.email,
    )
    right = await password_guard.PasswordGuard(runtime).checked(
        body.kind, body.email, lambda: pw.verify(row["password_hash"] if row else None, body.password))
    if not right:
        raise Rejected(source_guard.WRONG_PASSWORD, "The email or password is wrong.", Refusal.UNAUTHENTICATED)
    return Principal(principal_id=row["principal_id"], email=row["email"])


@serve(contract.REGISTER_SYSTEM, status_code=201)
async def register_system(body: NewSystem, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(body.id), _systems,
                           lambda state: system.register(state, body.id, body.name, body.kind), cause)
    return receipt(str(body.id), result)


@serve(contract.SET_SYSTEM_MFA)
async def set_system_mfa(system_id: uuid.UUID, body: MFASwitch, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(system_id), _systems,
                           lambda state: system.set_mfa(state, system_id, body.enabled), cause)
    return receipt(str(system_id), result)


@serve(contract.CONFIGURE_SIGN_IN)
async def configure_sign_in(system_id: uuid.UUID, body: SignInSettings, runtime: RuntimeDep,
                            cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(system_id), _systems,
                           lambda state: system.configure_sign_in(state, system_id, body), cause)
    return receipt(str(system_id), result)


@serve(contract.SYSTEM_STATE)
async def system_state(system_id: uuid.UUID, runtime: RuntimeDep, login_name: Annotated[
        str | None, Query(max_length=32, pattern=LOGIN_NAME_PATTERN)] = None) -> SystemState:
    """The system as its events have it now (its MFA switch, an application's sign-in settings), and who
    logs in to it under `login_name`: the gateway's decision and sign-in endpoints read them here, never
    from its projections, so no decision is older than a change already acknowledged."""
    state = await _existing_system(runtime.store, system_id)
    user_id = await runtime.pool.fetchval("SELECT principal_id FROM credentials WHERE login_name = $1 AND "
                                          "kind = 'user' AND NOT deleted", login_name) if login_name else None
    return SystemState(system_id=system_id, name=state.name, kind=state.kind, mfa_enabled=state.mfa_enabled,
                       sign_in=state.sign_in, user_id=user_id)


async def _existing_system(store, system_id: uuid.UUID) -> System:
    state = _systems(await store.history(str(system_id)))
    if not state.live:
        raise system.not_found()
    return state


@serve(contract.RENAME_SYSTEM)
async def rename_system(system_id: uuid.UUID, body: SystemChanges, runtime: RuntimeDep,
                        cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(system_id), _systems,
                           lambda state: system.rename(state, system_id, body.name), cause)
    return receipt(str(system_id), result)


@serve(contract.DELETE_SYSTEM)
async def delete_system(system_id: uuid.UUID, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    result = await execute(runtime.store, str(system_id), _systems,
                           lambda state: system.delete(state, system_id), cause)
    return receipt(str(system_id), result)


async def issue_api_key(store, cause, body: NewApiKey, now: datetime) -> IssuedApiKey:
    key_id = uuid.uuid4()
    key = api_keys.new_key(key_id)
    expires_at = now + timedelta(days=body.expires_in_days)

    if body.system_id is not None:
        system.bind_key(_systems(await store.history(str(body.system_id))), body.role)

    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await conn.execute("INSERT INTO api_keys (key_id, role, name, key_hash, created_at, created_by, expires_at, "
                           "system_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                           key_id, body.role, body.name, api_keys.key_hash(key), now, cause.actor, expires_at,
                           body.system_id)

    result = await execute(store, str(key_id), _api_keys, lambda state: api_keys.create(
        state, key_id, body.role, body.name, expires_at, body.system_id), cause, write)
    return IssuedApiKey(**receipt(str(key_id), result).model_dump(), key_id=key_id, role=body.role,
                        system_id=body.system_id, expires_at=expires_at, key=key)


@serve(contract.CREATE_API_KEY, status_code=201)
async def create_api_key(body: NewApiKey, runtime: RuntimeDep, cause: CauseDep) -> IssuedApiKey:
    return await issue_api_key(runtime.store, cause, body, runtime.clock.now())


@serve(contract.LIST_API_KEYS)
async def list_api_keys(runtime: RuntimeDep, status: KeyStatus | None = None) -> list[ListedApiKey]:
    """Every key ever made (or those of one status), newest first, refused ones included with the reason."""
    rows = await runtime.pool.fetch("SELECT * FROM (SELECT key_id, role, system_id, name, created_at, created_by, "
                                    "expires_at, "
                                    f"{api_keys.STATUS} AS status FROM api_keys) AS keys "
                                    "WHERE $2::text IS NULL OR status = $2 "
                                    "ORDER BY created_at DESC NULLS LAST, key_id", runtime.clock.now(), status)
    return [ListedApiKey(**row) for row in rows]


@serve(contract.REVOKE_API_KEY)
async def revoke_api_key(key_id: uuid.UUID, runtime: RuntimeDep, cause: CauseDep) -> CommandReceipt:
    async def write(conn: asyncpg.Connection, _: Sequence[EventPayload]) -> None:
        await conn.execute("UPDATE api_keys SET revoked = true WHERE key_id = $1", key_id)

    result = await execute(runtime.store, str(key_id), _api_keys, lambda state: api_keys.revoke(state, key_id),
                           cause, write)
    return receipt(str(key_id), result)


@serve(contract.VERIFY_API_KEY)
async def verify_api_key(body: KeyCheck, runtime: RuntimeDep) -> KeyIdentity:
    found = await api_keys.role_of(runtime.pool, body.key, runtime.clock.now())
    if found is None:
        raise Rejected("invalid_api_key", "The API key is unknown, revoked or expired.", Refusal.UNAUTHENTICATED)
    return KeyIdentity(key_id=found[0], role=found[1], system_id=found[2])
