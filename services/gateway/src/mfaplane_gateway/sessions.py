"""Sign-in challenges and sessions: signed, expiring tokens; sessions are also revocable rows.

A challenge is handed out by step one of a sign-in (password accepted) and names what step two
may do with it: `code` (verify a TOTP or recovery code), `prompt` (set up now or dismiss),
`setup` (must set up). It is short-lived and only good for that principal and purpose.
Every sign-in adds a session row; once it has expired, nothing reads it again, and a background
loop deletes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from itsdangerous import BadSignature, URLSafeTimedSerializer

from mfaplane_eventing import loops
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import Runtime

PURPOSES = ("code", "prompt", "setup")
SWEEP_SECONDS = 60.0
SWEEP_BATCH = 1000  # rows per statement: a short transaction, however many expired at once


@dataclass(frozen=True)
class Challenge:
    principal_id: uuid.UUID
    kind: str
    email: str
    purpose: str


class Tokens:
    def __init__(self, signing_key: str, challenge_ttl: int, session_ttl: int) -> None:
        self._challenges = URLSafeTimedSerializer(signing_key, salt="mfaplane-challenge")
        self._sessions = URLSafeTimedSerializer(signing_key, salt="mfaplane-session")
        self._challenge_ttl = challenge_ttl
        self.session_ttl = timedelta(seconds=session_ttl)

    def challenge(self, principal_id: uuid.UUID, kind: str, email: str, purpose: str) -> str:
        return self._challenges.dumps({"p": str(principal_id), "k": kind, "e": email, "u": purpose})

    def read_challenge(self, token: str, kind: str, purposes: tuple[str, ...]) -> Challenge:
        try:
            data = self._challenges.loads(token, max_age=self._challenge_ttl)
        except BadSignature:
            raise Rejected("invalid_challenge", "The sign-in challenge is invalid or expired; sign in again.",
                           401) from None
        if data["k"] != kind or data["u"] not in purposes:
            raise Rejected("invalid_challenge", "This challenge is not for this step; sign in again.", 401)
        return Challenge(uuid.UUID(data["p"]), data["k"], data["e"], data["u"])

    async def open_session(self, pool: asyncpg.Pool, principal_id: uuid.UUID, kind: str, now: datetime) -> str:
        session_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO sessions (session_id, principal_id, kind, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            session_id, principal_id, kind, now, now + self.session_ttl,
        )
        return self._sessions.dumps(str(session_id))

    async def session(self, pool: asyncpg.Pool, token: str, kind: str, now: datetime) -> asyncpg.Record:
        try:
            session_id = uuid.UUID(self._sessions.loads(token))
        except (BadSignature, ValueError):
            session_id = None
        row = session_id and await pool.fetchrow(
            "SELECT session_id, principal_id, kind, created_at, expires_at FROM sessions WHERE session_id = $1 "
            "AND kind = $2 AND revoked_at IS NULL AND expires_at > $3",
            session_id, kind, now,
        )
        if not row:
            raise Rejected("invalid_session", "The session is invalid, expired or ended; sign in again.", 401)
        return row

    @staticmethod
    async def end(pool: asyncpg.Pool, session_id: uuid.UUID, now: datetime) -> None:
        await pool.execute("UPDATE sessions SET revoked_at = $2 WHERE session_id = $1", session_id, now)


async def end_sessions_before(conn: asyncpg.Connection, principal_id: uuid.UUID, moment: datetime) -> None:
    """Ends every session of the principal opened before `moment` (reset, password change, deletion)."""
    await conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE principal_id = $1 AND created_at < $2 AND revoked_at IS NULL",
        principal_id, moment,
    )


async def delete_expired(pool: asyncpg.Pool, now: datetime, batch: int = SWEEP_BATCH) -> bool:
    """Deletes up to `batch` expired sessions, oldest first; True if there may be more. Replicas share
    the work: each skips the rows another is deleting."""
    deleted = await pool.fetchval(
        "WITH gone AS (DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM sessions "
        "WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT count(*) FROM gone", now, batch)
    return deleted == batch


async def sweep_expired(runtime: Runtime) -> None:
    await loops.repeat("deleting expired sessions", lambda: delete_expired(runtime.pool, runtime.clock.now()),
                       SWEEP_SECONDS)
