"""The broker and the database failing under a steady load of commands and sign-ins.

These faults hit every service at once, so they run on a stack of their own (embedded servers in a
temporary folder), never on the session's. Each test runs the load, injects the fault, lets the
system recover, waits until it is idle and checks the invariants (tests/invariants.py) over the
whole history of this stack, recording the outcome in the report printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from fault_tools import SteadyLoad, senders
from invariants import Mark, check_and_record, mark
from mfaplane_devstack import SERVICES, Stack

pytestmark = pytest.mark.slow
BROKER_PAUSE_SECONDS = 30
# The consumer groups' state is lost with the broker's: every member is told it is unknown and joins
# again. On Tansu that once took over two minutes (one run of several) before the groups committed
# again; they did catch up by themselves (the next test's checks, over the whole history, held).
BROKER_REJOIN_TIMEOUT = 300.0
DATABASE_DOWN_SECONDS = 10  # a slow restart or a failover: longer than a consumer's retries of one event


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str]) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("infra-faults")
    stack = Stack(folder, environ={}, durable=False, log_level=os.environ.get("LOG_LEVEL", "INFO"))
    try:
        stack.start_infra()
        stack.start_services({**service_env, "MFAPLANE_FAKE_CLOCK_FILE": str(folder / "fake-clock-offset")})
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def origin(own_stack: Stack) -> Mark:
    """The start of this stack's history: the invariants are checked over all of it, mail included."""
    return await mark(own_stack, offsets=False)


@pytest.fixture(scope="module")
def admin_key(own_stack: Stack) -> str:
    return own_stack.create_api_key("admin", "infra faults")


@pytest.fixture(scope="module")
def portal_key(own_stack: Stack) -> str:
    return own_stack.create_api_key("portal", "infra faults")


@pytest.fixture
async def load(own_stack: Stack, admin_key: str, portal_key: str) -> AsyncIterator[SteadyLoad]:
    def client(key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=own_stack.url("gateway"), timeout=60,
                                 headers={"Authorization": f"Bearer {key}"})

    async with client(admin_key) as admin, client(portal_key) as portal:
        yield SteadyLoad(admin, portal)


def exited_services(stack: Stack) -> dict[str, int]:
    """The services that exited (none should: each recovers by itself)."""
    return {name: code for name, code in stack.supervisor.exited().items() if name in SERVICES}


async def test_a_broker_paused_for_30_seconds_is_recovered_from_without_restarts(own_stack, origin, load) -> None:
    async with load:
        await load.served(10)
        own_stack.kill("kafka", signal.SIGSTOP)
        try:
            before = len(load.accepted)
            await asyncio.sleep(BROKER_PAUSE_SECONDS)
            accepted_while_paused = len(load.accepted) - before
        finally:
            own_stack.kill("kafka", signal.SIGCONT)
        await load.served(10)
    assert load.unexpected == []
    assert accepted_while_paused > 0  # commands only need the database: their events wait in the outbox
    assert exited_services(own_stack) == {}
    await check_and_record(own_stack, f"broker paused (SIGSTOP) for {BROKER_PAUSE_SECONDS} s, then resumed",
                           f"{load.summary()}; {accepted_while_paused} of the commands accepted during the pause",
                           origin, accepted=load.accepted)


async def test_a_broker_that_lost_its_data_is_rebuilt_by_republishing(own_stack, origin, load) -> None:
    async with load:
        await load.served(10)
        await asyncio.to_thread(own_stack.restart, "kafka")  # Tansu keeps memory only; topics recreated
        queued = await asyncio.gather(*(asyncio.to_thread(republish, own_stack, s) for s in SERVICES))
        await load.served(10)
    assert load.unexpected == []
    assert exited_services(own_stack) == {}
    await check_and_record(own_stack, "broker restarted with its data lost; every service republished from 1",
                           f"{load.summary()}; republished {dict(zip(SERVICES, queued, strict=True))}",
                           origin, accepted=load.accepted, idle_timeout=BROKER_REJOIN_TIMEOUT)


async def test_a_database_restart_refuses_commands_cleanly_and_loses_none(own_stack, origin, load) -> None:
    async with load:
        await load.served(10)
        await asyncio.to_thread(own_stack.take_down, "postgres")  # a fast shutdown: sessions are cut
        await asyncio.sleep(DATABASE_DOWN_SECONDS)
        await asyncio.to_thread(own_stack.restart, "postgres")
        await load.served(10)
    assert load.unexpected == []
    assert load.refused, "the restart did not land while commands were in flight"
    assert exited_services(own_stack) == {}
    # A mail the SMTP server accepted while the database went away is not recorded as sent, and is
    # sent again: the documented window, at most one mail per sender.
    await check_and_record(own_stack, f"PostgreSQL stopped mid-load, started again {DATABASE_DOWN_SECONDS} s later",
                           load.summary(), origin, accepted=load.accepted, mail_window=senders(own_stack))


def republish(stack: Stack, service: str) -> int:
    """The documented recovery step (docs/operations.md): `republish --from-position 1`; the count queued."""
    argv = [sys.executable, "-m", f"mfaplane_{service}", "republish", "--from-position", "1"]
    done = subprocess.run(argv, env=stack.service_env(service), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.splitlines()[-1].split(": ")[1].split()[0])  # after any log lines
