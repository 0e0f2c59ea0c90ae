from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfaplane_devstack import ChildFailed, ChildSpec, Supervisor, free_port, http_ok, listens_on
from mfaplane_devstack.supervisor import descendants

from .conftest import alive, embedded_env, wait_until_dead

IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('up', flush=True); time.sleep(60)")
SPAWNS_GRANDCHILD = ("import subprocess, sys, time; "
                     "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")


def http_server(name: str, port: int) -> ChildSpec:
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return ChildSpec(name, argv, ready=http_ok(f"http://127.0.0.1:{port}/"), ready_timeout=10)


def test_a_child_is_ready_logged_killed_restarted_and_stopped(supervisor: Supervisor) -> None:
    port = free_port()
    first = supervisor.start(http_server("web", port))
    assert http_ok(f"http://127.0.0.1:{port}/")()

    supervisor.kill("web")
    assert supervisor.exited() == {"web": -signal.SIGKILL}
    second = supervisor.restart("web")
    assert second.pid != first.pid and http_ok(f"http://127.0.0.1:{port}/")()

    supervisor.stop_all()
    assert not alive(second.pid)
    assert "GET / HTTP" in supervisor.log_path("web").read_text()


def test_stop_escalates_to_sigkill_and_sweeps_the_process_group(supervisor: Supervisor) -> None:
    stubborn = supervisor.start(ChildSpec("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], stop_timeout=0.5))
    parent = supervisor.start(ChildSpec("parent", [sys.executable, "-c", SPAWNS_GRANDCHILD]))
    time.sleep(0.3)
    grandchildren = descendants(parent.pid)
    assert grandchildren

    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 5
    assert wait_until_dead([stubborn.pid, parent.pid, *grandchildren]) == []


def test_a_child_that_dies_while_starting_is_reported_with_its_log(supervisor: Supervisor) -> None:
    crashing = ChildSpec("crashing", [sys.executable, "-c", "raise SystemExit('bad config')"], ready=lambda: False)
    with pytest.raises(ChildFailed, match="bad config"):
        supervisor.start(crashing)


def test_ctrl_c_on_run_stops_every_process(tmp_path: Path) -> None:
    """`python -m mfaplane_devstack run`, interrupted like a terminal's Ctrl-C, leaves nothing behind."""
    command = [sys.executable, "-m", "mfaplane_devstack", "run", "--infra-only", "--data-dir", str(tmp_path)]
    run = subprocess.Popen(command, env=embedded_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        summary = _wait_for_summary(tmp_path / "stack.json", run)
        children = descendants(run.pid)
        assert summary["postgres"].startswith("postgresql://") and len(children) >= 3

        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=20)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    assert "stopped" in output
    assert wait_until_dead(children) == []


def _wait_for_summary(path: Path, run: subprocess.Popen, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert run.poll() is None, run.stdout.read()
        assert time.monotonic() < deadline, "run did not start in time"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_a_paused_child_still_stops_promptly(supervisor: Supervisor) -> None:
    port = free_port()
    web = supervisor.start(http_server("web", port))
    supervisor.kill("web", signal.SIGSTOP)
    assert not http_ok(f"http://127.0.0.1:{port}/")()

    started = time.monotonic()
    supervisor.stop("web")
    assert time.monotonic() - started < 2 and not alive(web.pid)


def test_a_port_is_told_apart_from_one_another_process_holds(supervisor: Supervisor) -> None:
    port = free_port()
    server = supervisor.start(http_server("web", port))
    bystander = supervisor.start(ChildSpec("bystander", [sys.executable, "-c", "import time; time.sleep(60)"]))

    assert listens_on(server.pid, port)
    assert not listens_on(bystander.pid, port)  # what a service sees whose port was taken before it bound
    assert not listens_on(server.pid, free_port())
