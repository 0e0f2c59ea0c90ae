"""The account aggregate: a user's or an admin's identity. Pure decide/apply, no I/O.

Passwords are not part of the aggregate: their hashes live in the `credentials` table, written in
the same transaction as the events, and never in an event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_events import (
    AdminCreated,
    AdminDeleted,
    UserCreated,
    UserDeleted,
    UserPasswordChanged,
    UserUpdated,
)
from mfaplane_eventing.aggregate import Rejected


@dataclass(frozen=True)
class Account:
    exists: bool = False
    deleted: bool = False
    kind: str = "user"
    email: str = ""
    name: str = ""


def apply(state: Account, event: EventPayload) -> Account:
    match event:
        case UserCreated(email=email, name=name):
            return Account(exists=True, kind="user", email=email, name=name)
        case AdminCreated(email=email, name=name):
            return Account(exists=True, kind="admin", email=email, name=name)
        case UserUpdated(email=email, name=name):
            return replace(state, email=email, name=name)
        case UserDeleted() | AdminDeleted():
            return replace(state, deleted=True)
    return state


def _live(state: Account, kind: str | None = None) -> None:
    """Refuses an account that does not exist or is deleted, or is not of `kind` when given: the
    operations on users must not reach an admin by its id."""
    if not state.exists or state.deleted or kind not in (None, state.kind):
        raise Rejected(f"{kind or 'user'}_not_found", f"No such {kind or 'user'}.", status=404)


def create_user(state: Account, user_id: uuid.UUID, email: str, name: str) -> list[EventPayload]:
    if state.exists:
        raise Rejected("user_exists", "A user with this id already exists.")
    return [UserCreated(user_id=user_id, email=email, name=name)]


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


def change_password(state: Account, user_id: uuid.UUID) -> list[EventPayload]:
    _live(state)
    return [UserPasswordChanged(user_id=user_id)]


def delete_user(state: Account, user_id: uuid.UUID) -> list[EventPayload]:
    _live(state, "user")
    return [UserDeleted(user_id=user_id)]


def delete_admin(state: Account, admin_id: uuid.UUID) -> list[EventPayload]:
    """Whether another admin remains is not the aggregate's to know: the identity service checks it
    in the transaction that appends the event."""
    _live(state, "admin")
    return [AdminDeleted(admin_id=admin_id)]
