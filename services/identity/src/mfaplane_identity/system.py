"""The system aggregate: a protected macOS or Linux system, or an SSO/SAML application."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_events import (
    ApplicationSignInConfigured,
    SignInSettings,
    SystemDeleted,
    SystemMFADisabled,
    SystemMFAEnabled,
    SystemRegistered,
    SystemRenamed,
)
from mfaplane_eventing.aggregate import Refusal, Rejected


@dataclass(frozen=True)
class System:
    exists: bool = False
    deleted: bool = False
    name: str = ""
    kind: str = ""
    mfa_enabled: bool = False
    sign_in: SignInSettings | None = None  # an SSO application's, once configured

    @property
    def live(self) -> bool:
        return self.exists and not self.deleted


def apply(state: System, event: EventPayload) -> System:
    match event:
        case SystemRegistered(name=name, kind=kind):
            return replace(state, exists=True, name=name, kind=kind)
        case SystemRenamed(name=name):
            return replace(state, name=name)
        case ApplicationSignInConfigured():
            return replace(state, sign_in=SignInSettings(**event.model_dump(exclude={"system_id"})))
        case SystemMFAEnabled():
            return replace(state, mfa_enabled=True)
        case SystemMFADisabled():
            return replace(state, mfa_enabled=False)
        case SystemDeleted():
            return replace(state, deleted=True)
    return state


def register(state: System, system_id: uuid.UUID, name: str, kind: str) -> list[EventPayload]:
    if state.exists:
        raise Rejected("system_exists", "A system or application with this id already exists.")
    return [SystemRegistered(system_id=system_id, name=name, kind=kind)]


def set_mfa(state: System, system_id: uuid.UUID, enabled: bool) -> list[EventPayload]:
    _live(state)
    if state.mfa_enabled == enabled:
        return []
    return [SystemMFAEnabled(system_id=system_id) if enabled else SystemMFADisabled(system_id=system_id)]


def rename(state: System, system_id: uuid.UUID, name: str) -> list[EventPayload]:
    _live(state)
    return [] if name == state.name else [SystemRenamed(system_id=system_id, name=name)]


def configure_sign_in(state: System, system_id: uuid.UUID, settings: SignInSettings) -> list[EventPayload]:
    _live(state)
    if state.kind != "sso_application":
        raise Rejected("not_an_application", "Only an SSO application signs users in through the gateway.")
    _addresses_usable(settings)
    if settings == state.sign_in:
        return []
    return [ApplicationSignInConfigured(system_id=system_id, **settings.model_dump())]


def _addresses_usable(settings: SignInSettings) -> None:
    """Addresses are compared byte for byte with what an application sends, so one with a space, a
    control character or a port that cannot be would never match: refused when set. A rule of the
    command, not of the event, so that settings stored before it stay readable."""
    for url in (*settings.redirect_uris, *settings.acs_urls):
        parts = urlsplit(url)
        try:
            port = parts.port  # raises for a port out of range or not a number
        except ValueError:
            raise _unusable() from None
        if port == 0 or parts.netloc.endswith(":") or any(c.isspace() or not c.isprintable() for c in url):
            raise _unusable()


def _unusable() -> Rejected:
    return Rejected("invalid_application_url",
                    "A redirect or ACS URL has a space, a control character or an invalid port.", Refusal.UNPROCESSABLE)


# The kinds of system each bound API role may be bound to.
BOUND_KINDS = {"system_agent": ("macos", "linux"), "sso_client": ("sso_application",)}


def bind_key(state: System, role: str) -> None:
    """A key bound to a system does only its kind's work: an agent's decides logins to a host, a client
    secret signs in to an application."""
    _live(state)
    if state.kind not in BOUND_KINDS[role]:
        raise Rejected("wrong_system_kind", f"A key of role {role} is bound to a system of kind "
                                            f"{' or '.join(BOUND_KINDS[role])}.")


def delete(state: System, system_id: uuid.UUID) -> list[EventPayload]:
    _live(state)
    return [SystemDeleted(system_id=system_id)]


def _live(state: System) -> None:
    if not state.live:
        raise not_found()


def not_found() -> Rejected:
    return Rejected("system_not_found", "No such system or application.", Refusal.NOT_FOUND)
