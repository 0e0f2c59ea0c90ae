"""Events of the identity service: who exists, and which resources ask for MFA.

Password hashes never travel here; the identity service keeps them in its own table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

import email_validator
from pydantic import AfterValidator, Field, WithJsonSchema

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.topics import IDENTITY_EVENTS

Name = Field(min_length=1, max_length=200)


def _valid_as_written(address: str) -> str:
    """Checks an address as pydantic's EmailStr does but keeps it byte for byte: EmailStr would store
    "Ada@EXAMPLE.com" as "Ada@example.com". Lookups and uniqueness ignore case (identity service)."""
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from None
    return address


Email = Annotated[str, AfterValidator(_valid_as_written), WithJsonSchema({"type": "string", "format": "email"})]
# A user's account name on the systems an agent protects (the Unix login an SSH agent reports): the
# portable POSIX form Debian's adduser accepts, at most 32 characters (utmp's limit).
LOGIN_NAME_PATTERN = r"^[a-z_][a-z0-9_.-]*\$?$"
LoginName = Annotated[str, Field(min_length=1, max_length=32, pattern=LOGIN_NAME_PATTERN)]


class _IdentityEvent(EventPayload):
    topic: ClassVar[str] = IDENTITY_EVENTS.name


class _UserEvent(_IdentityEvent):
    aggregate_type: ClassVar[str] = "user"
    user_id: uuid.UUID


class UserCreated(_UserEvent):
    event_type: ClassVar[str] = "UserCreated"
    email: Email
    name: str = Name


class UserUpdated(_UserEvent):
    event_type: ClassVar[str] = "UserUpdated"
    email: Email
    name: str = Name


class UserLoginNameChanged(_UserEvent):
    """The user's login name on protected systems; None: none (the name is free for another user)."""

    event_type: ClassVar[str] = "UserLoginNameChanged"
    login_name: LoginName | None


class UserPasswordChanged(_UserEvent):
    event_type: ClassVar[str] = "UserPasswordChanged"
    # The reset link it redeemed; None: changed with the current password, or set by an admin.
    reset_id: uuid.UUID | None = None


class UserPasswordResetRequested(_UserEvent):
    """An admin asked for a reset link to be mailed to the user. The link's token (the reset id and its
    MAC under PASSWORD_RESET_KEY) is made by the notifier when it mails it and never travels here. A
    newer request supersedes this one."""

    event_type: ClassVar[str] = "UserPasswordResetRequested"
    reset_id: uuid.UUID
    expires_at: datetime


class UserDeleted(_UserEvent):
    event_type: ClassVar[str] = "UserDeleted"


class UserSessionsEnded(_UserEvent):
    """An admin ended every session of the user (a lost laptop, a suspected takeover)."""

    event_type: ClassVar[str] = "UserSessionsEnded"


class _AdminEvent(_IdentityEvent):
    aggregate_type: ClassVar[str] = "admin"
    admin_id: uuid.UUID


class AdminCreated(_AdminEvent):
    event_type: ClassVar[str] = "AdminCreated"
    email: Email
    name: str = Name


class AdminDeleted(_AdminEvent):
    """Its credentials, admin-portal enrollment and key material, timers and sessions go with it."""

    event_type: ClassVar[str] = "AdminDeleted"


class AdminPasswordChanged(_AdminEvent):
    event_type: ClassVar[str] = "AdminPasswordChanged"
    reset_id: uuid.UUID | None = None  # as UserPasswordChanged's


class AdminPasswordResetRequested(_AdminEvent):
    """As UserPasswordResetRequested, for an admin (the link goes to the admin console)."""

    event_type: ClassVar[str] = "AdminPasswordResetRequested"
    reset_id: uuid.UUID
    expires_at: datetime


class AdminSessionsEnded(_AdminEvent):
    """An admin ended every session of this admin."""

    event_type: ClassVar[str] = "AdminSessionsEnded"


ResourceKind = Literal["macos", "linux", "sso_application"]


class _SystemEvent(_IdentityEvent):
    aggregate_type: ClassVar[str] = "system"
    system_id: uuid.UUID


class SystemRegistered(_SystemEvent):
    event_type: ClassVar[str] = "SystemRegistered"
    name: str = Name
    kind: ResourceKind


class SystemMFAEnabled(_SystemEvent):
    event_type: ClassVar[str] = "SystemMFAEnabled"


class SystemMFADisabled(_SystemEvent):
    event_type: ClassVar[str] = "SystemMFADisabled"


class SystemRenamed(_SystemEvent):
    event_type: ClassVar[str] = "SystemRenamed"
    name: str = Name


class SystemDeleted(_SystemEvent):
    """Gone from the lists; its agents' keys decide nothing any more (the system is not found)."""

    event_type: ClassVar[str] = "SystemDeleted"


ApiRole = Literal["admin", "auditor", "portal", "system_agent"]


class _ApiKeyEvent(_IdentityEvent):
    aggregate_type: ClassVar[str] = "api_key"
    key_id: uuid.UUID


class ApiKeyCreated(_ApiKeyEvent):
    """The key itself and its hash stay in the identity service; only its id travels."""

    event_type: ClassVar[str] = "ApiKeyCreated"
    role: ApiRole
    name: str = Name
    # After it the key is refused. None only on keys created before keys expired.
    expires_at: datetime | None = None
    # The one system a system agent's key decides for; None for the other roles, and for agent keys
    # made before keys were bound (the decision endpoint refuses those).
    system_id: uuid.UUID | None = None


class ApiKeyRevoked(_ApiKeyEvent):
    event_type: ClassVar[str] = "ApiKeyRevoked"
