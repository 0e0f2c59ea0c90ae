"""The protected-resource aggregate: a macOS or Linux system, or an SSO/SAML application."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.identity_events import SystemMFADisabled, SystemMFAEnabled, SystemRegistered
from mfaplane_eventing.aggregate import Rejected


@dataclass(frozen=True)
class Resource:
    exists: bool = False
    mfa_enabled: bool = False


def apply(state: Resource, event: EventPayload) -> Resource:
    match event:
        case SystemRegistered():
            return Resource(exists=True)
        case SystemMFAEnabled():
            return replace(state, mfa_enabled=True)
        case SystemMFADisabled():
            return replace(state, mfa_enabled=False)
    return state


def register(state: Resource, system_id: uuid.UUID, name: str, kind: str) -> list[EventPayload]:
    if state.exists:
        raise Rejected("system_exists", "A system or application with this id already exists.")
    return [SystemRegistered(system_id=system_id, name=name, kind=kind)]


def set_mfa(state: Resource, system_id: uuid.UUID, enabled: bool) -> list[EventPayload]:
    if not state.exists:
        raise Rejected("system_not_found", "No such system or application.", status=404)
    if state.mfa_enabled == enabled:
        return []
    return [SystemMFAEnabled(system_id=system_id) if enabled else SystemMFADisabled(system_id=system_id)]
