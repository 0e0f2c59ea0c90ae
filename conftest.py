"""Session fixtures shared by every test folder: the real servers, started once per run.

`infra` is PostgreSQL, the Kafka-compatible broker and the SMTP catcher (embedded, or external
when DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS / SMTP_URL are set). `stack` adds the five services
as separate processes, with the fake clock enabled so tests can move time forward.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from mfaplane_contracts.identity_events import BOUND_ROLES
from mfaplane_devstack import Infra, Stack
from mfaplane_eventing.clock import FileOffsetClock, set_offset
from mfaplane_gateway.api import api_versions
from mfaplane_gateway.edge.auth import ROLES
from portal_flows import RootAdmin, bearer


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import anyio's parts now, in the main thread, before any test starts a thread.

    anyio imports its parts on first use, and pytest rewrites them on import (anyio is a pytest plugin).
    The AST builder of Python 3.11.7 keeps its recursion depth per interpreter, not per call, so a first
    use inside a TestClient's thread while another thread parses fails at random with "SystemError: AST
    constructor recursion depth mismatch" (CPython gh-106905), seen on a clean CI clone, where no
    rewritten module is cached yet.
    """
    for package in (anyio, anyio.abc):
        for name in dir(package):
            getattr(package, name)


UNREACHED_SIGN_IN_LIMITS = {
    "SIGN_IN_PER_MINUTE_PER_SOURCE": "1000000", "SIGN_IN_PER_MINUTE": "1000000",
    "CHALLENGE_PER_MINUTE_PER_SOURCE": "1000000", "CHALLENGE_PER_MINUTE": "1000000",
    "ARGON2_QUEUE": "100000", "SOURCE_MAX_PASSWORD_FAILURES": "1000000",
}


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
def service_env(clock_file: Path) -> dict[str, str]:
    """The services' settings under test: the fake clock, quick ticks and retries, cheap password hashing,
    and sign-in limits no test reaches (the suite signs in a lot, all from 127.0.0.1): a test of the
    limits starts processes of its own with tight ones (tests/test_sign_in_limits.py). The audit export
    serves records as soon as they are stored; tests/test_audit_order.py starts a gateway that waits."""
    return {
        "MFAPLANE_FAKE_CLOCK_FILE": str(clock_file),
        "TICK_SECONDS": "0.2",
        "MAIL_TICK_SECONDS": "0.2",
        "MAIL_RETRY_BASE_SECONDS": "0.5",
        "MAIL_RETRY_MAX_SECONDS": "2",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "8192",
        "AUDIT_SETTLE_SECONDS": "0",
        **UNREACHED_SIGN_IN_LIMITS,
    }


@pytest.fixture(scope="session")
def stack(_stack: Stack, infra: Infra, service_env: dict[str, str]) -> Stack:
    _stack.start_services(service_env)
    return _stack


@pytest.fixture(scope="session")
def api_keys(stack: Stack) -> dict[str, str]:
    """One API key per role, made with the identity service's bootstrap command; the system agent's is bound
    to a system of its own ("tests agent host")."""
    keys = {role: stack.create_api_key(role, f"tests {role}") for role in ROLES if role not in BOUND_ROLES}

    def system(kind: str) -> str:
        return httpx.post(f"{stack.url('gateway')}/v1/systems", json={"name": f"tests {kind}", "kind": kind},
                          headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30).json()["id"]

    return {**keys, "system_agent": stack.create_api_key("system_agent", "tests system_agent", system("linux")),
            "sso_client": stack.create_api_key("sso_client", "tests sso_client", system("sso_application"))}


@pytest.fixture
async def agent_of(stack: Stack, gateway_as) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """Makes gateway clients calling with a new system agent key bound to a system; closes them after the test."""
    made: list[httpx.AsyncClient] = []

    def make(system_id: str) -> httpx.AsyncClient:
        key = stack.create_api_key("system_agent", f"agent of {system_id}", system_id)
        made.append(httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30,
                                      headers={"API-Version": api_versions.LATEST, "Authorization": f"Bearer {key}"}))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


@pytest.fixture
async def gateway_as(stack: Stack,
                     api_keys: dict[str, str]) -> AsyncIterator[Callable[[str | None], httpx.AsyncClient]]:
    """Makes gateway clients calling with a role's API key (None: no key) and the newest API version; closes
    them after the test."""
    made: list[httpx.AsyncClient] = []

    def make(role: str | None) -> httpx.AsyncClient:
        key = {"Authorization": f"Bearer {api_keys[role]}"} if role else {}
        headers = {"API-Version": api_versions.LATEST, **key}
        made.append(httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30, headers=headers))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


@pytest.fixture
def admin(gateway_as) -> httpx.AsyncClient:
    return gateway_as("admin")


@pytest.fixture
def portal(gateway_as) -> httpx.AsyncClient:
    return gateway_as("portal")


@pytest.fixture(scope="session")
def root_admin(stack: Stack) -> RootAdmin:
    return RootAdmin(stack)


@pytest.fixture
async def console(root_admin: RootAdmin, portal: httpx.AsyncClient, clock: FakeClock, gateway_as) -> httpx.AsyncClient:
    """The admin console of an admin signed in with a code just now: what needs a step-up works for
    STEP_UP_SECONDS (300) of the services' clock."""
    return bearer(gateway_as, await root_admin.session(portal, clock))


class FakeClock:
    """Moves the services' clock (a shared offset file; MFAPLANE_FAKE_CLOCK_FILE) and reads it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reader = FileOffsetClock(path)

    def now(self) -> datetime:
        return self._reader.now()

    def advance(self, delta: timedelta) -> None:
        offset = self.now() - datetime.now(UTC) + delta
        set_offset(self._path, offset)


@pytest.fixture(scope="session")
def clock(clock_file: Path) -> FakeClock:
    return FakeClock(clock_file)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The report of the fault tests (tests/invariants.py): each fault, its load and the invariants checked."""
    invariants = sys.modules.get("invariants")
    if invariants is None or not invariants.REPORT:
        return
    terminalreporter.section("faults tried and invariants checked")
    for line in invariants.report_lines():
        terminalreporter.write_line(line)
