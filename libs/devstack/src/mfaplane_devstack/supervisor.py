"""Run named child processes, each in its own process group, and never leave one behind.

A child is started from a `ChildSpec`; its stdout and stderr go to `<log_dir>/<name>.log`.
`stop_all` (also registered with atexit) stops children in reverse start order: the stop
signal to the leader, a bounded wait, then SIGKILL to its process group and descendants.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Readiness = Callable[[], bool]


class ChildFailed(RuntimeError):
    """A child exited or did not become ready in time; the message ends with its log tail."""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None inherits the supervisor's environment
    cwd: Path | None = None
    ready: Readiness | None = None  # polled until True after start
    ready_timeout: float = 30.0
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    user: str | None = None  # run as this user (the supervisor must be root)
    group: str | None = None


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    swept: bool = False  # its process group got the final SIGKILL; never signal that pgid again


def tcp_open(host: str, port: int) -> Readiness:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ok(url: str, cafile: Path | None = None) -> Readiness:
    """A check that `url` answers 200; over HTTPS, verified against `cafile`."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context) as response:
                status: int = response.status
                return status == 200
        except (OSError, urllib.error.URLError):
            return False

    return check


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a listening TCP socket on `port` (Linux /proc; elsewhere True).

    A port from `free_port` can be taken by another process before the child binds it; the child
    then fails while the other process answers its readiness probe. This tells the two apart.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    listening = {
        fields[9]
        for table in tables if table.exists()
        for fields in (line.split() for line in table.read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port  # 0A: LISTEN
    }
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    return any(_socket_inode(fd) in listening for fd in fds)


def _socket_inode(fd: Path) -> str | None:
    try:
        target = os.readlink(fd)
    except OSError:
        return None
    return target[len("socket:["):-1] if target.startswith("socket:[") else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        atexit.register(self.stop_all)

    # -- starting -------------------------------------------------------------------------

    def start(self, spec: ChildSpec, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start `spec` (replacing a stopped child of the same name) and wait until it is ready."""
        with self._lock:
            if self.is_running(spec.name):
                raise ChildFailed(f"{spec.name} is already running")
            child = self._spawn(spec)
            self._children[spec.name] = child
        if wait:
            self.wait_ready(spec.name)
        return child.process

    def _spawn(self, spec: ChildSpec) -> _Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        with open(log_path, "ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} start: {' '.join(spec.argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env) if spec.env is not None else None,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # own group: a terminal's Ctrl-C reaches only us, and we can kill the group
                **_identity(spec),
            )
        return _Child(spec, process, log_path)

    def wait_ready(self, name: str) -> None:
        child = self._child(name)
        deadline = time.monotonic() + child.spec.ready_timeout
        while child.spec.ready is not None and not child.spec.ready():
            if child.process.poll() is not None:
                raise ChildFailed(self._describe(child, f"exited with code {child.process.returncode} while starting"))
            if time.monotonic() > deadline:
                raise ChildFailed(self._describe(child, f"not ready after {child.spec.ready_timeout:.0f}s"))
            time.sleep(0.05)

    def wait_exit(self, name: str, timeout: float) -> int:
        """Wait for a one-shot child to finish; kill it and raise if it takes longer than `timeout`."""
        child = self._child(name)
        try:
            return child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise ChildFailed(self._describe(child, f"still running after {timeout:.0f}s")) from None

    # -- stopping and faults ---------------------------------------------------------------

    def stop(self, name: str, timeout: float | None = None) -> None:
        """Stop one child cleanly; SIGKILL its group if it does not exit within its stop timeout."""
        child = self._child(name)
        process = child.process
        if process.poll() is None:
            _signal_leader(process, child.spec.stop_signal)
            _signal_tree(process, signal.SIGCONT)  # a child paused with SIGSTOP must see the signal
            try:
                process.wait(timeout if timeout is not None else child.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_tree(process, signal.SIGKILL)
                process.wait()
        elif child.swept:
            return
        _signal_group(process, signal.SIGKILL)  # sweep grandchildren left in the group
        child.swept = True

    def stop_all(self, timeout: float | None = None) -> None:
        with self._lock:
            for name in reversed(list(self._children)):
                self.stop(name, timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the child and all its descendants (SIGKILL: a crash; SIGSTOP: a hang)."""
        process = self._child(name).process
        if process.poll() is not None:
            raise ChildFailed(f"{name} is not running")
        _signal_tree(process, sig)
        if sig == signal.SIGKILL:
            process.wait()

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Stop the child if it runs, start it again from the same spec and wait until ready."""
        spec = self._child(name).spec
        self.stop(name)
        return self.start(spec)

    # -- inspection ------------------------------------------------------------------------

    def is_running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.process.poll() is None

    def pid(self, name: str) -> int:
        return self._child(name).process.pid

    def names(self) -> list[str]:
        return list(self._children)

    def exited(self) -> dict[str, int]:
        """Children that have exited since their last start, with their exit codes."""
        return {n: c.process.returncode for n, c in self._children.items() if c.process.poll() is not None}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(f"no child named {name!r}; known: {sorted(self._children)}") from None

    def _describe(self, child: _Child, problem: str) -> str:
        return f"{child.spec.name} {problem}; log {child.log_path}:\n{log_tail(child.log_path)}"

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _identity(spec: ChildSpec) -> dict[str, Any]:
    if spec.user is None:
        return {}
    return {"user": spec.user, "group": spec.group, "extra_groups": []}


def _signal_leader(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass


def _signal_tree(process: subprocess.Popen[bytes], sig: int) -> None:
    """The group, plus descendants that left it (PostgreSQL backends call setsid)."""
    offspring = descendants(process.pid)
    _signal_group(process, sig)
    for pid in offspring:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(root: int) -> list[int]:
    """Pids of all live descendants of `root` (Linux /proc; empty elsewhere)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier}
        found += sorted(children)
        frontier = children
    return found


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
