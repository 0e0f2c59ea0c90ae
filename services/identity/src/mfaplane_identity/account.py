"""The account aggregate: a user's or an admin's identity. Pure decide/apply, no I/O.

Passwords are not part of the aggregate: their hashes live in the `credentials` table, written in
the same transaction as the events, and never in an event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_events import (
    AdminCreated,
    AdminDeleted,
    AdminPasswordChanged,
    AdminPasswordResetRequested,
    AdminSessionsEnded,
    UserCreated,
    UserDeleted,
    UserLoginNameChanged,
    UserPasswordChanged,
    UserPasswordResetRequested,
    UserSessionsEnded,
    UserUpdated,
)
from mfaplane_eventing.aggregate import Refusal, Rejected


@dataclass(frozen=True)
class Account:
    exists: bool = False
    deleted: bool = False
    kind: str = "user"
    email: str = ""
    name: str = ""
    login_name: str | None = None  # a user's name on protected systems
    # The password reset mailed last, until it is used, expires or any password change closes it.
    open_reset: uuid.UUID | None = None
    reset_expires_at: datetime | None = None


def apply(state: Account, event: EventPayload) -> Account:
    match event:
        case UserCreated(email=email, name=name):
            return Account(exists=True, kind="user", email=email, name=name)
        case AdminCreated(email=email, name=name):
            return Account(exists=True, kind="admin", email=email, name=name)
        case UserUpdated(email=email, name=name):
            return replace(state, email=email, name=name)
        case UserLoginNameChanged(login_name=login_name):
            return replace(state, login_name=login_name)
        case UserDeleted() | AdminDeleted():
            return replace(state, deleted=True)
        case UserPasswordResetRequested(reset_id=reset_id, expires_at=expires_at) | AdminPasswordResetRequested(
                reset_id=reset_id, expires_at=expires_at):
            return replace(state, open_reset=reset_id, reset_expires_at=expires_at)
        case UserPasswordChanged() | AdminPasswordChanged():
            return replace(state, open_reset=None, reset_expires_at=None)
    return state


def _live(state: Account, kind: str | None = None) -> None:
    """Refuses an account that does not exist or is deleted, or is not of `kind` when given: the
    operations on users must not reach an admin by its id."""
    if not state.exists or state.deleted or kind not in (None, state.kind):
        raise Rejected(f"{kind or 'user'}_not_found", f"No such {kind or 'user'}.", Refusal.NOT_FOUND)


def create_user(state: Account, user_id: uuid.UUID, email: str, name: str,
                login_name: str | None = None) -> list[EventPayload]:
    if state.exists:
        raise Rejected("user_exists", "A user with this id already exists.")
    named = [UserLoginNameChanged(user_id=user_id, login_name=login_name)] if login_name else []
    return [UserCreated(user_id=user_id, email=email, name=name), *named]


def create_admin(state: Account, admin_id: uuid.UUID, email: str, name: str) -> list[EventPayload]:
    if state.exists:
        raise Rejected("admin_exists", "An admin with this id already exists.")
    return [AdminCreated(admin_id=admin_id, email=email, name=name)]


def update_user(state: Account, user_id: uuid.UUID, email: str | None, name: str | None) -> list[EventPayload]:
    _live(state, "user")
    new_email, new_name = email or state.email, name or state.name
    if (new_email, new_name) == (state.email, state.name):
        return []
    return [UserUpdated(user_id=user_id, email=new_email, name=new_name)]


def set_login_name(state: Account, user_id: uuid.UUID, login_name: str | None) -> list[EventPayload]:
    """Whether another user has the name is not the aggregate's to know: the identity service's unique
    index refuses it in the transaction that appends the event."""
    _live(state, "user")
    if login_name == state.login_name:
        return []
    return [UserLoginNameChanged(user_id=user_id, login_name=login_name)]


def change_password(state: Account, kind: str, principal_id: uuid.UUID) -> list[EventPayload]:
    """A new password, set by its owner (the gateway has checked the current one, and a code) or an admin."""
    _live(state, kind)
    return [_password_changed(kind, principal_id, None)]


def request_password_reset(state: Account, kind: str, principal_id: uuid.UUID, reset_id: uuid.UUID,
                           expires_at: datetime) -> list[EventPayload]:
    """A reset link to mail; it supersedes any reset requested before."""
    _live(state, kind)
    if kind == "admin":
        return [AdminPasswordResetRequested(admin_id=principal_id, reset_id=reset_id, expires_at=expires_at)]
    return [UserPasswordResetRequested(user_id=principal_id, reset_id=reset_id, expires_at=expires_at)]


def redeem_password_reset(state: Account, kind: str, principal_id: uuid.UUID, reset_id: uuid.UUID,
                          now: datetime) -> list[EventPayload]:
    """A new password through the reset link `reset_id`: only the open reset, once, before it expires, and
    only on the portal of the principal's kind. Every refusal is the same one: which of those failed
    is no business of whoever holds the link."""
    if not (state.exists and not state.deleted and state.kind == kind and state.open_reset == reset_id
            and state.reset_expires_at is not None and now < state.reset_expires_at):
        raise invalid_reset()
    return [_password_changed(kind, principal_id, reset_id)]


def invalid_reset() -> Rejected:
    """The one refusal of a reset link, whatever is wrong with it."""
    return Rejected("invalid_reset_token", "The reset link is invalid, expired, already used or replaced by a "
                    "newer one; ask an administrator for a new one.", Refusal.INVALID)


def _password_changed(kind: str, principal_id: uuid.UUID, reset_id: uuid.UUID | None) -> EventPayload:
    if kind == "admin":
        return AdminPasswordChanged(admin_id=principal_id, reset_id=reset_id)
    return UserPasswordChanged(user_id=principal_id, reset_id=reset_id)


def delete_user(state: Account, user_id: uuid.UUID) -> list[EventPayload]:
    _live(state, "user")
    return [UserDeleted(user_id=user_id)]


def delete_admin(state: Account, admin_id: uuid.UUID) -> list[EventPayload]:
    """Whether another admin remains is not the aggregate's to know: the identity service checks it
    in the transaction that appends the event."""
    _live(state, "admin")
    return [AdminDeleted(admin_id=admin_id)]


def end_sessions(state: Account, kind: str, principal_id: uuid.UUID) -> list[EventPayload]:
    """Every session of the principal ends (the gateway does it on this event); always an event, even
    with no session open: the audit trail shows the admin acted."""
    _live(state, kind)
    if kind == "admin":
        return [AdminSessionsEnded(admin_id=principal_id)]
    return [UserSessionsEnded(user_id=principal_id)]
