from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfaplane_devstack import Pki, Supervisor, client_options, ensure_pki
from mfaplane_devstack.kafka import tls_env


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    with Supervisor(tmp_path / "logs") as supervisor:
        yield supervisor


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA with the broker's certificate and the clients `devstack` (start_kafka's own) and `tests`."""
    return ensure_pki(tmp_path / "pki", ["devstack", "tests"])


def tls_client(bootstrap: str, pki: Pki, client: str = "tests") -> dict[str, Any]:
    """aiokafka options for `client`, with its certificate from `pki`."""
    return client_options(tls_env(bootstrap, pki, client))


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 here may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_until_dead(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still alive after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while (survivors := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return survivors


def embedded_env() -> dict[str, str]:
    """Our environment without external-server settings, so the stack embeds its own."""
    external = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL")
    return {key: value for key, value in os.environ.items() if key not in external}
