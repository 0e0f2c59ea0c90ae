"""Session fixtures shared by every test folder: the real servers, started once per run.

`infra` is PostgreSQL, the Kafka-compatible broker and the SMTP catcher (embedded, or external
when DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS / SMTP_URL are set). `stack` adds the five services
as separate processes, with the fake clock enabled so tests can move time forward.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfaplane_devstack import Infra, Stack

TEST_ENCRYPTION_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def _stack(stack_dir: Path) -> Iterator[Stack]:
    stack = Stack(stack_dir, durable=False, log_level=os.environ.get("LOG_LEVEL", "INFO"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def infra(_stack: Stack) -> Infra:
    return _stack.infra or _stack.start_infra()


@pytest.fixture(scope="session")
def clock_file(stack_dir: Path) -> Path:
    return stack_dir / "fake-clock-offset"


@pytest.fixture(scope="session")
def stack(_stack: Stack, infra: Infra, clock_file: Path) -> Stack:
    _stack.start_services({
        "MFAPLANE_FAKE_CLOCK_FILE": str(clock_file),
        "MFA_ENCRYPTION_KEYS": f'{{"test-1": "{TEST_ENCRYPTION_KEY}"}}',
        "MFA_ACTIVE_KEY_ID": "test-1",
        "TICK_SECONDS": "0.2",
        "MAIL_TICK_SECONDS": "0.2",
        "MAIL_RETRY_BASE_SECONDS": "0.5",
        "MAIL_RETRY_MAX_SECONDS": "2",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "8192",
    })
    return _stack
