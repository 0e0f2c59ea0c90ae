"""Keeps the sealed keys and recovery-code hashes in step with the enrollment events appended.

Written in the same transaction as the events, so an event naming a secret_id is stored exactly
when its key material is, and a reset's destruction of the old key commits with the reset.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.mfa_events import MFAReset, RecoveryCodesRegenerated, TOTPEnrolled, TOTPSecretIssued
from mfaplane_mfa.enrollment import Decision
from mfaplane_mfa.key_vault import KeyVault
from mfaplane_mfa.totp import TOTPSecret

# The events whose key rows `record` writes or destroys; every other event appends on its own.
ROW_EVENTS = (TOTPSecretIssued, TOTPEnrolled, RecoveryCodesRegenerated, MFAReset)


class KeyMaterial:
    def __init__(self, vault: KeyVault) -> None:
        self._vault = vault

    @staticmethod
    def rows_needed(events: Sequence[EventPayload]) -> bool:
        return any(isinstance(event, ROW_EVENTS) for event in events)

    async def open(self, conn: asyncpg.Connection | asyncpg.Pool, secret_id: uuid.UUID) -> TOTPSecret | None:
        sealed = await conn.fetchval("SELECT sealed FROM totp_secrets WHERE secret_id = $1", secret_id)
        return None if sealed is None else self._vault.open(sealed, secret_id)

    @staticmethod
    async def recovery_code_hashes(conn: asyncpg.Connection | asyncpg.Pool, secret_id: uuid.UUID) -> list[str]:
        rows = await conn.fetch(
            "SELECT hash FROM recovery_code_hashes WHERE secret_id = $1 ORDER BY position", secret_id
        )
        return [row["hash"] for row in rows]

    async def record(self, conn: asyncpg.Connection, enrollment_id: str, events: Sequence[EventPayload],
                     decision: Decision) -> None:
        for event in events:
            match event:
                case TOTPSecretIssued(secret_id=secret_id, replaced_secret_id=replaced):
                    assert decision.new_secret is not None
                    await self._destroy(conn, replaced)
                    await conn.execute(
                        "INSERT INTO totp_secrets (secret_id, enrollment_id, sealed) VALUES ($1, $2, $3)",
                        secret_id, enrollment_id, self._vault.seal(decision.new_secret, secret_id),
                    )
                case TOTPEnrolled(secret_id=secret_id):
                    await self._store_recovery_codes(conn, secret_id, decision)
                case RecoveryCodesRegenerated(secret_id=secret_id):
                    await conn.execute("DELETE FROM recovery_code_hashes WHERE secret_id = $1", secret_id)
                    await self._store_recovery_codes(conn, secret_id, decision)
                case MFAReset(shredded_secret_id=shredded):
                    await self._destroy(conn, shredded)

    @staticmethod
    async def _store_recovery_codes(conn: asyncpg.Connection, secret_id: uuid.UUID, decision: Decision) -> None:
        assert decision.recovery_codes is not None
        await conn.executemany(
            "INSERT INTO recovery_code_hashes (secret_id, position, hash) VALUES ($1, $2, $3)",
            [(secret_id, i, h) for i, h in enumerate(decision.recovery_codes.hashes)],
        )

    @staticmethod
    async def _destroy(conn: asyncpg.Connection, secret_id: uuid.UUID | None) -> None:
        if secret_id is not None:
            await conn.execute("DELETE FROM totp_secrets WHERE secret_id = $1", secret_id)

    @staticmethod
    async def destroy_all(conn: asyncpg.Connection, enrollment_id: str) -> None:
        await conn.execute("DELETE FROM totp_secrets WHERE enrollment_id = $1", enrollment_id)
