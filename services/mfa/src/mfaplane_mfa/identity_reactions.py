"""What the mfa service does when identity changes: a deleted user's or admin's requirement ends
and its key material is destroyed (crypto-shredding); the history of the enrollment stays."""

from __future__ import annotations

import uuid

import asyncpg

from mfaplane_contracts.commands import RemoveMFARequirement
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.identity_events import AdminDeleted, UserDeleted
from mfaplane_contracts.mfa_events import Scope, enrollment_id
from mfaplane_eventing.event_store import Cause
from mfaplane_mfa.enrollment_commands import EnrollmentCommands
from mfaplane_mfa.key_material import KeyMaterial

_NAMESPACE = uuid.UUID("0b9d3f5e-2f7c-4c36-9a55-3f1e8d2c7a41")
HANDLES = (UserDeleted, AdminDeleted)  # the consumer skips the other identity events


def _ended_enrollment(body: UserDeleted | AdminDeleted) -> tuple[Scope, uuid.UUID]:
    """A user has an enrollment in the user portal, an admin one in the admin portal."""
    if isinstance(body, AdminDeleted):
        return "admin_portal", body.admin_id
    return "user_portal", body.user_id


def handler(commands: EnrollmentCommands):
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        body = envelope.body()
        if not isinstance(body, HANDLES):
            return
        # The command id follows from the event id, so a redelivered deletion changes nothing.
        cause = Cause(actor=envelope.actor, correlation_id=envelope.correlation_id,
                      command_id=uuid.uuid5(_NAMESPACE, str(envelope.event_id)), causation_id=envelope.event_id)
        scope, principal_id = _ended_enrollment(body)
        command = RemoveMFARequirement(principal_id=principal_id, scope=scope, actor=cause.actor,
                                       command_id=cause.command_id, correlation_id=cause.correlation_id)
        await commands(command, cause)
        await KeyMaterial.destroy_all(conn, enrollment_id(scope, principal_id))

    return handle
