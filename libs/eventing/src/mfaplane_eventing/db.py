"""Connection pools and schema migrations. Each service owns one PostgreSQL schema."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

log = logging.getLogger(__name__)

EVENTING_MIGRATIONS = Path(__file__).parent / "migrations"
# What asyncpg raises while the server is away (down, starting, shutting down, a connection cut):
# never the fault of the request or event in hand, and over once the server is back.
DATABASE_AWAY = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                 asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseRefused(RuntimeError):
    """PostgreSQL would not take a first connection, for a reason that waiting does not cure: its
    certificate failed verification, or it refused our TLS, client certificate or password. The
    message names the server and the cause for an operator, never a secret of DATABASE_URL."""


def verified(url: str) -> str:
    """`url`, verifying the server's certificate and name unless the URL (or PGSSLMODE) names another
    sslmode. asyncpg's own default, "prefer", takes whatever answers: plaintext from a server without
    TLS, any certificate from one with it. Like Kafka's, TLS is turned off by name, never fallen into."""
    parts = urlsplit(url)
    if "sslmode" in parse_qs(parts.query) or os.environ.get("PGSSLMODE"):
        return url
    return parts._replace(query="&".join(filter(None, [parts.query, "sslmode=verify-full"]))).geturl()


_FILE_PARAMETERS = ("sslrootcert", "sslcert", "sslkey", "passfile")


@contextlib.asynccontextmanager
async def _first_connection(url: str) -> AsyncIterator[None]:
    for name, value in _file_parameters(url):
        if not Path(value).expanduser().is_file():
            raise DatabaseRefused(f"{_server(url)}: {name} of DATABASE_URL names no file: {value}")
    try:
        yield
    except ssl.SSLCertVerificationError as error:
        raise DatabaseRefused(f"{_server(url)}: its certificate is not trusted ({error.verify_message}); "
                              "check the host and sslrootcert of DATABASE_URL") from None
    except (ssl.SSLError, asyncpg.InvalidAuthorizationSpecificationError, asyncpg.ClientConfigurationError) as error:
        raise DatabaseRefused(f"{_server(url)} refused the connection: {error}") from None
    except asyncpg.ConnectionDoesNotExistError:
        # What a server that refuses our client certificate does: it ends the TLS handshake, unexplained.
        raise DatabaseRefused(f"{_server(url)} closed the connection as it began; a client certificate it "
                              "does not accept (another CA, expired) is the usual cause: check sslcert and "
                              "sslkey of DATABASE_URL") from None
    except ConnectionError as error:
        if "SSL upgrade" not in str(error):
            raise  # down or restarting: waiting cures it
        raise DatabaseRefused(f"{_server(url)} offers no TLS; sslmode=disable connects without it") from None


def _file_parameters(url: str) -> list[tuple[str, str]]:
    query = parse_qs(urlsplit(url).query)
    return [(name, value) for name in _FILE_PARAMETERS for value in query.get(name, [])]


def _server(url: str) -> str:
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"  # one host[:port], or a list of them
    sslmode = parse_qs(parts.query).get("sslmode", [os.environ.get("PGSSLMODE", "")])[0]
    return f"PostgreSQL at {hosts} (sslmode={sslmode})"


def _checked(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"DATABASE_SCHEMA must be a lower-case identifier, got {schema!r}")
    return schema


class Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no type information
    """A pooled connection whose return to the pool costs no round trip unless it holds a session lock.

    asyncpg resets every connection given back to a pool with `SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`: one more round trip per acquisition, a visible share of a
    TOTP verification's cost (docs/performance.md). The services never
    change session settings (only `SET LOCAL`), never LISTEN, and their cursors live inside
    transactions, which asyncpg rolls back on release whatever the reset query is. The one
    session-level state they keep is an advisory lock held across transactions (the outbox relay's
    leadership, a replay's), always taken with `try_session_lock`; a connection that took one gets
    asyncpg's whole reset when it is given back, so a lock whose release was cut short (a task
    cancelled in its `finally`) never stays with a pooled connection.
    """

    _took_session_lock = False

    async def try_session_lock(self, name: str) -> bool:
        """`pg_try_advisory_lock` on `name`'s hash: held by this session until unlocked or reset."""
        held_before, self._took_session_lock = self._took_session_lock, True  # a call cut short may have taken it
        taken: bool = await self.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name)
        self._took_session_lock = held_before or taken  # a standby's polls cost no reset
        return taken

    def get_reset_query(self) -> str:
        if not self._took_session_lock:
            return ""
        self._took_session_lock = False
        reset: str = super().get_reset_query()
        return reset


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    url = verified(url)
    async with _first_connection(url):
        return await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            connection_class=Connection,
            server_settings={"search_path": _checked(schema), "application_name": f"mfaplane-{schema}"},
        )


async def migrate(url: str, schema: str, directories: list[Path]) -> list[str]:
    """Applies every not yet applied `NNNN_name.sql`, in name order; safe to run again and concurrently."""
    schema, url = _checked(schema), verified(url)
    async with _first_connection(url):
        conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            # One migrator per schema at a time; a second waits, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('mfaplane-migrate:' || $1))", schema)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            applied = []
            scripts = (p for d in directories for p in d.glob("*.sql"))
            for path in sorted(scripts, key=lambda p: (p.parent != EVENTING_MIGRATIONS, p.name)):
                name = f"{path.parent.parent.name}/{path.name}"
                if name in done:
                    continue
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
        for name in applied:
            log.info("migration applied", extra={"migration": name, "schema": schema})
        return applied
    finally:
        await conn.close()
