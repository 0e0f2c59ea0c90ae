"""The system under test: a devstack `Stack` with the bench's settings, scratch schemas, API clients.

Servers are embedded unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS / SMTP_URL name external ones
(`Stack` decides). The services run with their production defaults except:

- ARGON2_TIME_COST=1, ARGON2_MEMORY_COST_KIB=8192: the test suite's cheap password hashing, so
  that tens of thousands of users can be created before a run (creation is not timed);
- MFAPLANE_FAKE_CLOCK_FILE: the expiry storm moves the services' clock past a deadline, and the
  sign-in scenario moves it past TOTP steps already used;
- sign-in limits no run reaches (the bench signs in from one address, as fast as it can): it
  measures throughput, not the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

import mfaplane_gateway
from mfaplane_devstack import SERVICES, ChildSpec, Infra, Stack, free_port, http_ok
from mfaplane_eventing import db
from mfaplane_eventing.clock import FileOffsetClock, set_offset

REPO = Path(__file__).resolve().parents[1]
GATEWAY_MIGRATIONS = Path(mfaplane_gateway.__file__).parent / "migrations"
SERVICE_ENV = {
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST_KIB": "8192",
    "SIGN_IN_PER_MINUTE_PER_SOURCE": "100000000", "SIGN_IN_PER_MINUTE": "100000000",
    "CHALLENGE_PER_MINUTE_PER_SOURCE": "100000000", "CHALLENGE_PER_MINUTE": "100000000",
    "ARGON2_QUEUE": "100000", "SOURCE_MAX_PASSWORD_FAILURES": "100000000",
}


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:300]}")
        self.status = status


class Api:
    """A gateway client with one API key; aiohttp for a light client side (it shares the CPUs)."""

    def __init__(self, base_url: str, key: str | None, connections: int = 100) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.session = aiohttp.ClientSession(
            base_url, headers=headers, timeout=aiohttp.ClientTimeout(total=120),
            # uvicorn closes idle connections after 5 s; closing them first avoids writing to a closed one
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=4),
        )

    async def call(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        async with self.session.request(method, path, json=json, params=params) as response:
            body = await response.read()
            if response.status >= 300:
                raise ApiError(method, path, response.status, body.decode(errors="replace"))
            return await response.json() if body else None

    async def close(self) -> None:
        await self.session.close()


class BenchStack:
    def __init__(self, data_dir: Path | None = None, *, keep: bool = False, log_level: str = "INFO") -> None:
        self.keep = keep or data_dir is not None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="mfaplane-bench-"))
        self.stack = Stack(self.data_dir, log_level=log_level)
        self.clock_file = self.data_dir / "fake-clock-offset"
        self.keys: dict[str, str] = {}
        self._services_started = False
        self.service_env = dict(SERVICE_ENV)

    # -- lifecycle ----------------------------------------------------------------------------

    def infra(self) -> Infra:
        return self.stack.infra or self.stack.start_infra()

    def services(self) -> Stack:
        if not self._services_started:
            self.infra()
            self.stack.start_services({**self.service_env, "MFAPLANE_FAKE_CLOCK_FILE": str(self.clock_file)})
            self.keys = {role: self.stack.create_api_key(role, f"bench {role}") for role in ("admin", "portal")}
            self._services_started = True
        return self.stack

    def bare_app(self) -> tuple[str, int]:
        """Starts (once) the bare FastAPI endpoint of bench.bare_app; returns its URL and pid."""
        name = "bench-bare-app"
        if not self.stack.supervisor.is_running(name):
            port = free_port()
            argv = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
            self._bare_url = f"http://127.0.0.1:{port}"
            self.stack.supervisor.start(ChildSpec(name, argv, cwd=REPO, ready=http_ok(self._bare_url + "/healthz")))
        return self._bare_url, self.stack.supervisor.pid(name)

    def stop(self) -> None:
        self.stack.stop()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def database_url(self) -> str:
        return self.infra().database_url

    def external(self) -> dict[str, bool]:
        return {name: bool(os.environ.get(name)) for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL")}

    # -- clients ------------------------------------------------------------------------------

    def api(self, role: str | None, connections: int = 100) -> Api:
        self.services()
        return Api(self.stack.url("gateway"), self.keys[role] if role else None, connections)

    async def pool(self, schema: str, size: int = 4) -> asyncpg.Pool:
        return await db.create_pool(self.database_url, schema, min_size=1, max_size=size)

    @contextlib.asynccontextmanager
    async def scratch_schema(self, name: str, migrations: list[Path]) -> AsyncIterator[str]:
        """A schema migrated like a service's (the event store tables, plus `migrations`), dropped afterwards."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()
        await db.migrate(self.database_url, name, [db.EVENTING_MIGRATIONS, *migrations])
        try:
            yield name
        finally:
            conn = await asyncpg.connect(self.database_url)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            finally:
                await conn.close()

    async def quiesce(self, timeout: float = 1800) -> None:
        """Waits until no work is left in flight (outboxes empty, no email pending), so a timed phase
        does not share the CPUs with the tail of the previous one."""
        from bench.runner import log, wait_until  # noqa: PLC0415 - runner imports nothing from here

        conn = await asyncpg.connect(self.database_url)
        outboxes = " + ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in SERVICES)

        async def idle() -> bool:
            pending = await conn.fetchval("SELECT count(*) FROM notifier.notifications WHERE status = 'pending' "
                                          "AND next_attempt_at <= now() + interval '1 minute'")
            return pending == 0 and await conn.fetchval(f"SELECT {outboxes}") == 0

        try:
            started = time.monotonic()
            await wait_until(idle, timeout, "the system to be idle", 0.5)
            await asyncio.sleep(1.0)  # consumers finish what was published last
            if time.monotonic() - started > 2:
                log(f"waited {time.monotonic() - started:.0f} s for the system to be idle")
        finally:
            await conn.close()

    # -- the services' clock ------------------------------------------------------------------

    def now(self) -> datetime:
        return FileOffsetClock(self.clock_file).now()

    def advance_clock(self, delta: timedelta) -> None:
        set_offset(self.clock_file, self.now() - datetime.now(UTC) + delta)


async def gather_limited(concurrency: int, coroutines) -> list[Any]:
    """Runs the coroutines with at most `concurrency` at a time; results in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(coroutine):
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


def stack_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process and each process it started (services, servers), by name;
    the stack's processes all stay up through a run, so differences of two readings are the run's."""
    used: dict[str, float] = {}
    me = psutil.Process(os.getpid())
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            name = "bench client" if process.pid == me.pid else _name(process)
        except psutil.NoSuchProcess:
            continue
        used[name] = used.get(name, 0.0) + times.user + times.system
    return used


def cpu_ms_per_operation(before: dict[str, float], after: dict[str, float], operations: int) -> dict[str, float]:
    """Milliseconds of CPU per operation, by process name, between two `stack_cpu_seconds()` readings."""
    used = {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}
    return {name: round(seconds * 1000 / max(operations, 1), 2) for name, seconds in used.items() if seconds > 0}


def _name(process: psutil.Process) -> str:
    command = " ".join(process.cmdline()) + " "
    for service in SERVICES:
        if f"mfaplane_{service} " in command:
            return service
    for server in ("postgres", "tansu", "smtp"):
        if server in command:
            return server
    return process.name()
