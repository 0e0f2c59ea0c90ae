"""PostgreSQL over TLS, as a managed database asks for it: every service's pool, migrations and outbox
relay connect with `sslmode=verify-full`, a client certificate and a password from a file; a client
without one of them is refused by the server, and a server the client cannot verify is refused by
the client, at start-up, with a message that says why (libs/devstack/postgres.py, eventing/db.py).

Run against the embedded server, whose TLS the stack sets up (an external DATABASE_URL is the
operator's to set; these tests then have nothing of the stack's to attack)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import pytest

from mfaplane_devstack import Stack, Supervisor, ensure_tls, start_postgres
from mfaplane_devstack.stack import SERVICES
from mfaplane_eventing import db

pytestmark = pytest.mark.skipif("DATABASE_URL" in os.environ, reason="attacks the embedded PostgreSQL's TLS set-up")


def _params(stack: Stack) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(stack.infra.database_url).query).items()}


def _url(stack: Stack, **changes: object) -> str:
    """The stack's database URL with `changes` to its parameters (None drops one)."""
    params = {**_params(stack), **changes}
    query = urlencode({key: str(value) for key, value in params.items() if value is not None}, safe="/")
    return urlsplit(stack.infra.database_url)._replace(query=query).geturl()


def _password(stack: Stack) -> str:
    return Path(_params(stack)["passfile"]).read_text().strip().rsplit(":", 1)[1]


async def test_every_service_connects_over_tls_with_a_client_certificate(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.database_url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT a.application_name, s.ssl, s.version, s.client_dn FROM pg_stat_activity a "
            "JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'client backend'")  # every client, not only ours
    finally:
        await conn.close()
    assert {row["application_name"] for row in rows} >= {f"mfaplane-{service}" for service in SERVICES}
    assert {(row["ssl"], row["client_dn"]) for row in rows} == {(True, "/O=mfaplane devstack/CN=postgres")}
    assert {row["version"] for row in rows} <= {"TLSv1.2", "TLSv1.3"}


@pytest.mark.parametrize("changes, refusal", [
    ({"sslmode": "disable"}, "no encryption"),
    ({"sslmode": "require", "sslcert": None, "sslkey": None}, "requires a valid client certificate"),
    ({"passfile": None}, "password authentication failed"),
])
async def test_a_client_missing_tls_a_certificate_or_the_password_is_refused(
        stack: Stack, changes: dict[str, str | None], refusal: str) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=refusal):
        await asyncpg.connect(_url(stack, **changes), timeout=10)


async def test_a_client_certificate_from_another_ca_is_refused(stack: Stack, tmp_path: Path) -> None:
    stranger = ensure_tls(tmp_path / "other-pki")  # a CA of its own, the same common name
    with pytest.raises(db.DatabaseRefused, match="closed the connection as it began; a client certificate"):
        await db.create_pool(_url(stack, sslcert=stranger.client_cert, sslkey=stranger.client_key), "identity")
    pool = await db.create_pool(_url(stack), "identity")  # the rest of that URL was good
    await pool.close()


async def test_a_file_named_in_the_url_that_is_missing_is_named(stack: Stack, tmp_path: Path) -> None:
    with pytest.raises(db.DatabaseRefused, match=f"sslcert of DATABASE_URL names no file: {tmp_path}/gone.crt"):
        await db.create_pool(_url(stack, sslcert=tmp_path / "gone.crt"), "identity")


async def test_a_server_that_offers_no_tls_is_refused(tmp_path: Path) -> None:
    """A stand-in that answers PostgreSQL's SSLRequest with "N", as a server without TLS does."""
    async def without_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(8)
        writer.write(b"N")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(without_tls, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(db.DatabaseRefused, match=rf"127\.0\.0\.1:{port} \(sslmode=verify-full\) offers no TLS"):
            ca = ensure_tls(tmp_path / "pki").ca
            await db.migrate(f"postgresql://app@127.0.0.1:{port}/app?sslrootcert={ca}", "identity", [])


async def test_a_server_signed_by_another_ca_is_refused_at_start_up(stack: Stack, tmp_path: Path) -> None:
    url = _url(stack, sslrootcert=ensure_tls(tmp_path / "other-pki").ca)
    with pytest.raises(db.DatabaseRefused, match=r"PostgreSQL at 127\.0\.0\.1:\d+ \(sslmode=verify-full\): "
                                                  r"its certificate is not trusted \(.*self-signed"):
        await db.create_pool(url, "identity")


async def test_a_url_without_sslmode_still_verifies_the_server(stack: Stack, tmp_path: Path) -> None:
    """asyncpg's own default ("prefer") takes any certificate; the services' default is verify-full."""
    url = _url(stack, sslmode=None, sslrootcert=ensure_tls(tmp_path / "other-pki").ca)
    lax = await asyncpg.connect(url, timeout=10)
    await lax.close()
    with pytest.raises(db.DatabaseRefused, match=r"\(sslmode=verify-full\): its certificate is not trusted"):
        await db.create_pool(url, "identity")
    pool = await db.create_pool(_url(stack, sslmode=None), "identity")  # with the stack's CA it connects
    await pool.close()


async def test_a_server_whose_certificate_names_another_host_is_refused(stack: Stack, tmp_path: Path) -> None:
    """The same CA and certificate (127.0.0.1, localhost), served on 127.0.0.2: an impostor on the
    path holding a certificate of the CA for another name."""
    supervisor = Supervisor(tmp_path / "logs")
    try:
        url = start_postgres(supervisor, tmp_path / "impostor", ensure_tls(stack.data_dir / "pki"),
                             host="127.0.0.2", durable=False)
        with pytest.raises(db.DatabaseRefused, match=r"127\.0\.0\.2.*IP address mismatch"):
            await db.migrate(url, "identity", [])
    finally:
        supervisor.stop_all()


def test_a_service_that_cannot_verify_the_database_stops_with_the_reason(stack: Stack, tmp_path: Path) -> None:
    """`migrate` (the Job before a roll-out) and `serve` (the pod) exit at once with one line that
    says what is wrong, and no secret; not a hang and not a bare traceback."""
    url = _url(stack, sslrootcert=ensure_tls(tmp_path / "other-pki").ca)
    port = urlsplit(url).port
    env = stack.service_env("identity", {"DATABASE_URL": url})

    migrate = _run(["migrate"], env)
    assert migrate.returncode == 1
    assert migrate.stderr.strip().splitlines() == [
        f"identity migrate: PostgreSQL at 127.0.0.1:{port} (sslmode=verify-full): its certificate is not "
        "trusted (self-signed certificate in certificate chain); check the host and sslrootcert of DATABASE_URL"]

    serve = _run(["serve"], {**env, "HTTP_PORT": "0", "METRICS_PORT": "0"})
    assert serve.returncode != 0
    assert '"message": "database refused"' in serve.stdout + serve.stderr
    assert "its certificate is not trusted" in serve.stdout + serve.stderr
    for output in (migrate.stdout + migrate.stderr, serve.stdout + serve.stderr):
        assert _password(stack) not in output


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mfaplane_identity", *args], env=env, capture_output=True,
                          text=True, timeout=90)
