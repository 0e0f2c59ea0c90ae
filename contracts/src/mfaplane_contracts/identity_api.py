"""The identity service's internal API: its commands on principals, systems, API keys and passwords,
the checks the gateway asks it for (a password, an API key, a principal's existence) and a system's
current state. Called by the gateway only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from mfaplane_contracts import reset_tokens
from mfaplane_contracts.commands import CommandReceipt
from mfaplane_contracts.endpoints import Answer, Endpoint, Request
from mfaplane_contracts.identity_events import BOUND_ROLES, ApiRole, Email, LoginName, SignInSettings, SystemKind
from mfaplane_contracts.text import DisplayName

Kind = Literal["user", "admin"]
KeyStatus = Literal["active", "expired", "revoked", "creator_deleted"]
Password = Field(min_length=8, max_length=256)
API_KEY_DEFAULT_DAYS = 90
API_KEY_MAX_DAYS = 365


class NewPrincipal(Request):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    email: Email
    name: DisplayName
    password: str = Password


class NewUser(NewPrincipal):
    login_name: LoginName | None = None


class UserChanges(Request):
    email: Email | None = None
    name: DisplayName | None = None
    login_name: LoginName | None = Field(default=None, description="null clears it; absent leaves it as it is")


class NewSystem(Request):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    name: DisplayName
    kind: SystemKind


class SystemChanges(Request):
    name: DisplayName


class MFASwitch(Request):
    enabled: bool


class SignInCheck(Request):
    kind: Kind
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=256)
    # The client address the gateway saw, for the spraying limit (identity's source_guard.py); None: not counted.
    source: str | None = Field(default=None, min_length=1, max_length=64)


class PasswordCheck(Request):
    password: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=64, description="the client address, for the spraying limit")


class NewPassword(Request):
    password: str = Password


class ResetRedemption(Request):
    kind: Kind
    token: str = Field(min_length=1, max_length=reset_tokens.MAX_LENGTH)
    password: str = Password


class NewApiKey(Request):
    role: ApiRole
    name: DisplayName
    expires_in_days: int = Field(default=API_KEY_DEFAULT_DAYS, ge=1, le=API_KEY_MAX_DAYS,
                                 description="the key is refused after this many days")
    system_id: uuid.UUID | None = Field(default=None, description="required for a system_agent key (the one system it "
                                                                  "decides for) and an sso_client key (the SSO "
                                                                  "application whose client secret it is), and only "
                                                                  "for those")

    @model_validator(mode="after")
    def _agent_keys_name_their_system(self) -> NewApiKey:
        if (self.role in BOUND_ROLES) != (self.system_id is not None):
            raise ValueError("system_id is required for a system_agent or sso_client key, and only for those")
        return self


class KeyCheck(Request):
    key: str = Field(min_length=1, max_length=200)


class Principal(Answer):
    principal_id: uuid.UUID
    email: str


class ExistingPrincipal(Answer):
    principal_id: uuid.UUID
    kind: Kind


class SystemState(Answer):
    system_id: uuid.UUID
    name: str
    kind: SystemKind
    mfa_enabled: bool
    sign_in: SignInSettings | None = Field(default=None, description="an SSO application's sign-in settings")
    user_id: uuid.UUID | None = Field(default=None, description="the user with the login name asked for; "
                                                                 "null: none has it")


class IssuedApiKey(CommandReceipt):
    key_id: uuid.UUID
    role: ApiRole
    system_id: uuid.UUID | None
    expires_at: datetime
    key: str = Field(description="shown once; only its hash is kept")


class ListedApiKey(Answer):
    key_id: uuid.UUID
    role: ApiRole
    system_id: uuid.UUID | None = Field(description="a system agent's system; null for other roles, and for agent "
                                                    "keys made before keys were bound (refused by the decision "
                                                    "endpoint)")
    name: str
    created_at: datetime | None = Field(description="null for keys made before it was recorded")
    created_by: str | None = Field(description="admin:<id> or operator:cli; null for keys made before it was "
                                               "recorded")
    expires_at: datetime
    status: KeyStatus = Field(description="creator_deleted: the admin who minted it was deleted, and a key lives no "
                                          "longer than its admin")


class KeyIdentity(Answer):
    key_id: uuid.UUID
    role: ApiRole
    system_id: uuid.UUID | None


class PasswordSet(CommandReceipt):
    changed_at: datetime = Field(description="when the password changed: sessions authenticated before it end")


class ResetRequested(CommandReceipt):
    expires_at: datetime


PRINCIPAL = "/principals/{kind}/{principal_id}"
SYSTEM = "/systems/{system_id}"

CREATE_USER: Endpoint[CommandReceipt] = Endpoint("identity", "POST", "/users", CommandReceipt, NewUser, "CreateUser")
UPDATE_USER: Endpoint[CommandReceipt] = Endpoint("identity", "PATCH", "/users/{user_id}", CommandReceipt, UserChanges,
                                                 "UpdateUser", "{user_id}")
DELETE_USER: Endpoint[CommandReceipt] = Endpoint("identity", "DELETE", "/users/{user_id}", CommandReceipt, None,
                                                 "DeleteUser", "{user_id}")
CREATE_ADMIN: Endpoint[CommandReceipt] = Endpoint("identity", "POST", "/admins", CommandReceipt, NewPrincipal,
                                                  "CreateAdmin")
DELETE_ADMIN: Endpoint[CommandReceipt] = Endpoint("identity", "DELETE", "/admins/{admin_id}", CommandReceipt, None,
                                                  "DeleteAdmin", "{admin_id}")
PRINCIPAL_EXISTS: Endpoint[ExistingPrincipal] = Endpoint("identity", "GET", PRINCIPAL, ExistingPrincipal)
END_SESSIONS: Endpoint[CommandReceipt] = Endpoint("identity", "POST", f"{PRINCIPAL}/end-sessions", CommandReceipt,
                                                  None, "EndSessions", "{principal_id}")
AUTHENTICATE: Endpoint[Principal] = Endpoint("identity", "POST", "/authenticate", Principal, SignInCheck)
CHECK_PASSWORD: Endpoint[ExistingPrincipal] = Endpoint("identity", "POST", f"{PRINCIPAL}/password-check",
                                                       ExistingPrincipal, PasswordCheck)
SET_PASSWORD: Endpoint[PasswordSet] = Endpoint("identity", "PUT", f"{PRINCIPAL}/password", PasswordSet, NewPassword,
                                               "ChangePassword", "{principal_id}")
REQUEST_PASSWORD_RESET: Endpoint[ResetRequested] = Endpoint("identity", "POST", f"{PRINCIPAL}/password-reset",
                                                            ResetRequested, None, "RequestPasswordReset",
                                                            "{principal_id}")
REDEEM_PASSWORD_RESET: Endpoint[PasswordSet] = Endpoint("identity", "POST", "/password-resets/redeem", PasswordSet,
                                                        ResetRedemption)
REGISTER_SYSTEM: Endpoint[CommandReceipt] = Endpoint("identity", "POST", "/systems", CommandReceipt, NewSystem,
                                                     "RegisterSystem")
SYSTEM_STATE: Endpoint[SystemState] = Endpoint("identity", "GET", SYSTEM, SystemState)
RENAME_SYSTEM: Endpoint[CommandReceipt] = Endpoint("identity", "PATCH", SYSTEM, CommandReceipt, SystemChanges,
                                                   "RenameSystem", "{system_id}")
DELETE_SYSTEM: Endpoint[CommandReceipt] = Endpoint("identity", "DELETE", SYSTEM, CommandReceipt, None,
                                                   "DeleteSystem", "{system_id}")
SET_SYSTEM_MFA: Endpoint[CommandReceipt] = Endpoint("identity", "PUT", f"{SYSTEM}/mfa", CommandReceipt, MFASwitch,
                                                    "SetSystemMFA", "{system_id}")
CONFIGURE_SIGN_IN: Endpoint[CommandReceipt] = Endpoint("identity", "PUT", f"{SYSTEM}/sign-in", CommandReceipt,
                                                       SignInSettings, "ConfigureApplicationSignIn", "{system_id}")
CREATE_API_KEY: Endpoint[IssuedApiKey] = Endpoint("identity", "POST", "/api-keys", IssuedApiKey, NewApiKey,
                                                  "CreateApiKey")
LIST_API_KEYS: Endpoint[list[ListedApiKey]] = Endpoint("identity", "GET", "/api-keys", list[ListedApiKey])
REVOKE_API_KEY: Endpoint[CommandReceipt] = Endpoint("identity", "DELETE", "/api-keys/{key_id}", CommandReceipt, None,
                                                    "RevokeApiKey", "{key_id}")
VERIFY_API_KEY: Endpoint[KeyIdentity] = Endpoint("identity", "POST", "/api-keys/verify", KeyIdentity, KeyCheck)
