"""Sign-in challenges and sessions: signed, expiring tokens; sessions are also revocable rows.

A challenge is handed out by step one of a sign-in (password accepted) and names what step two
may do with it: `code` (verify a TOTP or recovery code), `prompt` (set up now or dismiss),
`setup` (must set up). It is short-lived, only good for that principal and purpose, and single-use:
it opens at most one session. It is refused once the principal's password changed, its MFA was
reset or newly required, its sessions were ended, or it was deleted after the challenge was issued:
a cutoff the routes making those changes record at once (`end_now`), and the projector from their
events (`end_sessions_before`).
Every sign-in adds a session row; once it has expired, nothing reads it again, and a background
loop deletes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from itsdangerous import BadSignature, URLSafeTimedSerializer

from mfaplane_chassis.service import Runtime
from mfaplane_eventing import loops
from mfaplane_eventing.aggregate import Refusal, Rejected

PURPOSES = ("code", "prompt", "setup")
SWEEP_SECONDS = 60.0
SWEEP_BATCH = 1000  # rows per statement: a short transaction, however many expired at once
EXPIRING = (("sessions", "session_id"), ("redeemed_challenges", "challenge_id"), ("pending_sign_ins", "token_hash"),
            ("oidc_codes", "code_hash"), ("oidc_access_tokens", "token_hash"))


@dataclass(frozen=True)
class Challenge:
    challenge_id: uuid.UUID
    principal_id: uuid.UUID
    kind: str
    email: str
    purpose: str
    issued_at: datetime  # by the service clock, which cutoffs and sessions are measured with too
    application_sign_in: str | None = None  # the pending sign-in to an application this one is for (sso/)


class Tokens:
    def __init__(self, signing_key: str, challenge_ttl: int, session_ttl: int, admin_code_required: bool) -> None:
        self._challenges = URLSafeTimedSerializer(signing_key, salt="mfaplane-challenge")
        self._sessions = URLSafeTimedSerializer(signing_key, salt="mfaplane-session")
        self._challenge_ttl = challenge_ttl
        self.session_ttl = timedelta(seconds=session_ttl)
        # ADMIN_MFA_REQUIRED: an admin session for which no code was checked (opened while it was off) counts
        # for nothing, on every route: the admin API, session info, step-up, password change.
        self._admin_code_required = admin_code_required

    def challenge(self, principal_id: uuid.UUID, kind: str, email: str, purpose: str, now: datetime,
                  application_sign_in: str | None = None) -> str:
        return self._challenges.dumps({"c": str(uuid.uuid4()), "p": str(principal_id), "k": kind, "e": email,
                                       "u": purpose, "t": now.isoformat(), "a": application_sign_in})

    def read_challenge(self, token: str, kind: str, purposes: tuple[str, ...]) -> Challenge:
        try:
            data = self._challenges.loads(token, max_age=self._challenge_ttl)
        except BadSignature:
            raise Rejected("invalid_challenge", "The sign-in challenge is invalid or expired; sign in again.",
                           Refusal.UNAUTHENTICATED) from None
        if data["k"] != kind or data["u"] not in purposes:
            raise Rejected("invalid_challenge", "This challenge is not for this step; sign in again.",
                           Refusal.UNAUTHENTICATED)
        return Challenge(uuid.UUID(data["c"]), uuid.UUID(data["p"]), data["k"], data["e"], data["u"],
                         datetime.fromisoformat(data["t"]), data.get("a"))

    @staticmethod
    async def check_redeemable(pool: asyncpg.Pool, challenge: Challenge) -> None:
        """Refuses a challenge already redeemed or cut off, before step two evaluates anything."""
        row = await pool.fetchrow(
            "SELECT EXISTS (SELECT FROM redeemed_challenges WHERE challenge_id = $1) AS redeemed, "
            "(SELECT not_before FROM principal_cutoffs WHERE principal_id = $2) AS not_before",
            challenge.challenge_id, challenge.principal_id)
        not_before = row["not_before"]
        _refuse_unless_redeemable(row["redeemed"], not_before is not None and challenge.issued_at <= not_before)

    async def redeem(self, pool: asyncpg.Pool, challenge: Challenge, now: datetime, code_checked: bool) -> str:
        """The one session `challenge` gives; `code_checked`: its step two checked a code."""
        return await self.open_session(pool, challenge.principal_id, challenge.kind, now, challenge.issued_at,
                                       challenge, now if code_checked else None)

    async def redeem_without_session(self, pool: asyncpg.Pool, challenge: Challenge) -> None:
        """Uses `challenge` up, as `redeem` does, for a sign-in that opens no session here (to an application)."""
        outcome = await pool.fetchval("SELECT redeem_challenge($1, $2, $3, $4)", challenge.principal_id,
                                      challenge.issued_at, challenge.challenge_id, self._expiry(challenge))
        _refuse_unless_redeemable(outcome == "redeemed", outcome == "cut_off")

    def _expiry(self, challenge: Challenge) -> datetime:
        return challenge.issued_at + timedelta(seconds=self._challenge_ttl)

    async def open_session(self, pool: asyncpg.Pool, principal_id: uuid.UUID, kind: str, now: datetime,
                           authenticated_at: datetime | None = None, challenge: Challenge | None = None,
                           mfa_verified_at: datetime | None = None) -> str:
        """A new session for a password checked at `authenticated_at`, checked against the principal's cutoff
        under its lock, which the projector's cutoffs take too: no session is opened past a cutoff
        committed meanwhile (migration 0010, open_session)."""
        authenticated_at = authenticated_at or now
        session_id = uuid.uuid4()
        challenge_expires_at = challenge and self._expiry(challenge)
        outcome = await pool.fetchval(
            "SELECT open_session($1, $2, $3, $4, $5, $6, $7, $8, $9)", session_id, principal_id, kind, now,
            now + self.session_ttl, authenticated_at, mfa_verified_at, challenge and challenge.challenge_id,
            challenge_expires_at)
        _refuse_unless_redeemable(outcome == "redeemed", outcome == "cut_off")
        return self._sessions.dumps(str(session_id))

    async def session(self, pool: asyncpg.Pool, token: str, kind: str, now: datetime) -> asyncpg.Record:
        try:
            session_id = uuid.UUID(self._sessions.loads(token))
        except (BadSignature, ValueError):
            session_id = None
        row = session_id and await pool.fetchrow(
            "SELECT session_id, principal_id, kind, created_at, expires_at, mfa_verified_at FROM sessions "
            "WHERE session_id = $1 "
            "AND kind = $2 AND revoked_at IS NULL AND expires_at > $3",
            session_id, kind, now,
        )
        if not row:
            raise Rejected("invalid_session", "The session is invalid, expired or ended; sign in again.",
                           Refusal.UNAUTHENTICATED)
        if kind == "admin" and self._admin_code_required and row["mfa_verified_at"] is None:
            raise Rejected("admin_mfa_required", "This admin session was opened without a code, and every admin "
                           "must use MFA: sign in again.", Refusal.UNAUTHENTICATED)
        return row

    @staticmethod
    async def end(pool: asyncpg.Pool, session_id: uuid.UUID, now: datetime) -> None:
        await pool.execute("UPDATE sessions SET revoked_at = $2 WHERE session_id = $1", session_id, now)

    @staticmethod
    async def stepped_up(pool: asyncpg.Pool, session_id: uuid.UUID, now: datetime) -> None:
        """Records that the session's holder just proved their second factor again."""
        await pool.execute("UPDATE sessions SET mfa_verified_at = $2 WHERE session_id = $1", session_id, now)


def _refuse_unless_redeemable(redeemed: bool, cut_off: bool) -> None:
    if redeemed:
        raise Rejected("invalid_challenge", "This challenge was already used; sign in again.", Refusal.UNAUTHENTICATED)
    if cut_off:
        raise Rejected("invalid_challenge", "The account changed since this challenge was issued; sign in again.",
                       Refusal.UNAUTHENTICATED)


async def _lock_principal(conn: asyncpg.Connection, principal_id: uuid.UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))", str(principal_id))


async def end_sessions_before(conn: asyncpg.Connection, cutoffs: dict[uuid.UUID, datetime]) -> None:
    """For each principal, ends every session whose password was checked before its moment, and refuses
    the challenges issued before it (password change, MFA reset or newly required, deletion). Three
    statements for any number of principals: a bulk requirement cuts off thousands at once."""
    principals, moments = list(cutoffs), list(cutoffs.values())
    # In one order, so two batches never wait for each other's locks in a cycle.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(p::text, 0)) "
                       "FROM unnest($1::uuid[]) AS p ORDER BY p", principals)
    await conn.execute(
        "INSERT INTO principal_cutoffs (principal_id, not_before) SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) "
        "ON CONFLICT (principal_id) DO UPDATE SET not_before = GREATEST(principal_cutoffs.not_before, "
        "EXCLUDED.not_before)", principals, moments)
    await conn.execute(
        "UPDATE sessions SET revoked_at = c.moment FROM unnest($1::uuid[], $2::timestamptz[]) AS c(principal, moment) "
        "WHERE sessions.principal_id = c.principal AND sessions.authenticated_at < c.moment "
        "AND sessions.revoked_at IS NULL", principals, moments)


async def end_other_sessions(pool: asyncpg.Pool, principal_id: uuid.UUID, kept: uuid.UUID, moment: datetime) -> None:
    """Ends every session of the principal but `kept`, the one that changed its password at `moment`: that
    one counts as authenticated at `moment` from now on, so the projector's cutoff for the change (which
    ends what was authenticated before it) leaves it alone. Should that cutoff have come first, it
    revoked `kept` at exactly `moment`, which is undone here, unless a later cutoff has come too."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_principal(conn, principal_id)
        await conn.execute(
            "UPDATE sessions SET authenticated_at = $2, revoked_at = NULL WHERE session_id = $1 "
            "AND (revoked_at IS NULL OR revoked_at = $2) "
            "AND NOT EXISTS (SELECT FROM principal_cutoffs WHERE principal_id = $3 AND not_before > $2)",
            kept, moment, principal_id)
        await end_sessions_before(conn, {principal_id: moment})


async def end_now(runtime: Runtime, principal_id: uuid.UUID) -> None:
    """Ends the principal's sessions and challenges at once, for a change made through the API: the
    projector does it too, once the change's event reaches it, but the caller must not wait for that."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        await end_sessions_before(conn, {principal_id: runtime.clock.now()})


async def delete_expired(pool: asyncpg.Pool, now: datetime, batch: int = SWEEP_BATCH) -> bool:
    """Deletes up to `batch` expired sessions, and as many of each kind of expired token, oldest first;
    True if there may be more. Replicas share the work: each skips the rows another is deleting."""
    counts = [await delete_older(pool, table, key, "expires_at", now, batch) for table, key in EXPIRING]
    return batch in counts


async def delete_older(pool: asyncpg.Pool, table: str, key: str, column: str, moment: datetime, batch: int) -> int:
    """Deletes up to `batch` rows whose `column` is at or before `moment`, oldest first; how many it deleted.
    Replicas share the work: each skips the rows another is deleting."""
    return await pool.fetchval(
        f"WITH gone AS (DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "
        f"WHERE {column} <= $1 ORDER BY {column} LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT count(*) FROM gone", moment, batch)


async def sweep_expired(runtime: Runtime) -> None:
    await loops.repeat("deleting expired sessions", lambda: delete_expired(runtime.pool, runtime.clock.now()),
                       SWEEP_SECONDS)
