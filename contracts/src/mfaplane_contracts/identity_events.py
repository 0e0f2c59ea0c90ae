"""Events of the identity service: who exists, and which resources ask for MFA.

Password hashes never travel here; the identity service keeps them in its own table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

import email_validator
from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from mfaplane_contracts.envelope import EventPayload, Message
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


SystemKind = Literal["macos", "linux", "sso_application"]


class _SystemEvent(_IdentityEvent):
    aggregate_type: ClassVar[str] = "system"
    system_id: uuid.UUID


class SystemRegistered(_SystemEvent):
    event_type: ClassVar[str] = "SystemRegistered"
    name: str = Name
    kind: SystemKind


class SystemMFAEnabled(_SystemEvent):
    event_type: ClassVar[str] = "SystemMFAEnabled"


class SystemMFADisabled(_SystemEvent):
    event_type: ClassVar[str] = "SystemMFADisabled"


class SystemRenamed(_SystemEvent):
    event_type: ClassVar[str] = "SystemRenamed"
    name: str = Name


def _application_url(url: str) -> str:
    """Where the gateway sends a signed-in user back: https, or http to this machine (an application in
    development), never with a fragment or credentials, compared byte for byte when used."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)) or not parts.hostname:
        raise ValueError("must be an https URL (http only for localhost)")
    if parts.fragment or "#" in url or parts.username or parts.password:
        raise ValueError("must have no fragment and no user name or password")
    return url


ApplicationUrl = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_application_url)]
SignInProtocol = Literal["oidc", "saml"]


class SignInSettings(Message):
    """How an SSO application signs its users in through the gateway: OpenID Connect, back to one of
    `redirect_uris`; or SAML 2.0, for the service provider `entity_id`, posting to one of `acs_urls`."""

    protocol: SignInProtocol
    redirect_uris: list[ApplicationUrl] = Field(default=[], max_length=20)
    entity_id: str | None = Field(default=None, min_length=1, max_length=1000, pattern=r"^\S+$")
    acs_urls: list[ApplicationUrl] = Field(default=[], max_length=20)

    @model_validator(mode="after")
    def _settings_of_its_protocol(self) -> SignInSettings:
        if self.protocol == "oidc" and (not self.redirect_uris or self.entity_id or self.acs_urls):
            raise ValueError("OpenID Connect takes redirect_uris (at least one), and no entity_id or acs_urls")
        if self.protocol == "saml" and (self.entity_id is None or not self.acs_urls or self.redirect_uris):
            raise ValueError("SAML takes entity_id and acs_urls (at least one), and no redirect_uris")
        return self


class ApplicationSignInConfigured(_SystemEvent, SignInSettings):
    """An SSO application's sign-in settings, replacing any before."""

    event_type: ClassVar[str] = "ApplicationSignInConfigured"


class SystemDeleted(_SystemEvent):
    """Gone from the lists; its agents' keys decide nothing any more (the system is not found)."""

    event_type: ClassVar[str] = "SystemDeleted"


# system_agent: a protected system's agent, deciding logins to that system; sso_client: an SSO application's
# client secret at the OpenID Connect token endpoint, and nothing else. Both are bound to their system.
ApiRole = Literal["admin", "auditor", "portal", "system_agent", "sso_client"]
BOUND_ROLES = ("system_agent", "sso_client")


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
