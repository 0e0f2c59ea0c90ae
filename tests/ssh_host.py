"""A throwaway SSH host for tests: Debian's real sshd on a loopback port, with the agent installed by its
own install command, and logins through paramiko's keyboard-interactive client.

    require_ssh_host()                       # skips the test, saying why, when it cannot run here
    with SshHost(gateway_url=..., system_id=..., api_key=...) as host:
        alice = host.add_user()              # a local Unix user with a password and an ed25519 key
        seen = host.login(alice, codes=["123456"])
        seen.prompts, seen.succeeded, seen.output, host.syslog_lines, host.counters()

Everything lives under a fresh directory and a PAM service of its own (sshd copied to that name uses
/etc/pam.d/<name>); teardown removes the agent with its `remove` command, checks the PAM file came back
byte for byte, then deletes the users, the PAM file and the directory. Needs root.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest

from mfaplane_agent import counters

SSHD = Path("/usr/sbin/sshd")
PAM_PYTHON = Path("/lib/security/pam_python.so")
DEBIAN_PAM_SSHD = Path("/etc/pam.d/sshd")
HOST_PYTHON = Path("/usr/bin/python3")  # the interpreter pam_python runs the agent in
AGENT_SOURCE = Path(__file__).resolve().parents[1] / "agents" / "pam" / "src"
WAIT_SECONDS = 15.0
SSHD_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def require_ssh_host() -> None:
    """Skips the calling test when a real sshd with pam_python cannot run here."""
    if os.geteuid() != 0:
        pytest.skip("the SSH host tests need root (they add Unix users and a PAM service)")
    missing = [str(path) for path in (SSHD, PAM_PYTHON, DEBIAN_PAM_SSHD, HOST_PYTHON) if not path.exists()]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install Debian's openssh-server and libpam-python "
                    "(.ci/run installs them)")


@dataclass(frozen=True)
class LocalUser:
    name: str
    password: str
    key: paramiko.Ed25519Key


@dataclass
class LoginResult:
    """What the person at the SSH client saw."""
    prompts: list[str] = field(default_factory=list)
    succeeded: bool = False
    output: str = ""


class SshHost:
    def __init__(self, *, gateway_url: str, system_id: str, api_key: str, first_factor: str = "publickey",
                 when_unreachable: str | None = None, exclude_users: str = "", exclude_groups: str = "",
                 ca_file: str | None = None, timeout: str = "5", site_sshd_settings: str = "") -> None:
        """`site_sshd_settings`: lines of a drop-in of the host's own, sorted before the agent's (so they win)."""
        self.first_factor = first_factor
        self._site_sshd_settings = site_sshd_settings
        self._install_options = [
            "--gateway-url", gateway_url, "--system-id", system_id, "--first-factor", first_factor,
            "--exclude-users", exclude_users, "--exclude-groups", exclude_groups, "--timeout", timeout,
            *(["--when-unreachable", when_unreachable] if when_unreachable else []),
            *(["--ca-file", ca_file] if ca_file else []),
        ]
        self._api_key = api_key
        self.users: list[LocalUser] = []
        self.syslog_lines: list[str] = []
        self._sshd: subprocess.Popen | None = None
        self._syslog: socket.socket | None = None
        self.pristine_pam = b""

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> SshHost:
        require_ssh_host()
        # world-traversable: sshd reads AuthorizedKeysFile with the user's own rights
        self.dir = Path(tempfile.mkdtemp(prefix="mfaplane-ssh-"))
        self.dir.chmod(0o755)
        self.service = f"mfaplane-sshd-{secrets.token_hex(4)}"
        try:
            self._prepare()
            self.install()
            self._start_sshd()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self._stop_sshd()
            for user in self.users:
                subprocess.run(["userdel", "-f", user.name], capture_output=True, timeout=WAIT_SECONDS)
            if self.pam_file.exists():
                self.run_agent("remove")
                restored = self.pam_file.read_bytes()
                self.pam_file.unlink()
                assert restored == self.pristine_pam, "`remove` did not restore the PAM file byte for byte"
                assert not self.drop_in.exists(), "`remove` left the sshd drop-in behind"
        finally:
            if self._syslog:
                self._syslog.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- paths ------------------------------------------------------------------------------------
    @property
    def pam_file(self) -> Path:
        return Path("/etc/pam.d") / self.service

    @property
    def config_path(self) -> Path:
        return self.dir / "etc" / "agent.conf"

    @property
    def drop_in(self) -> Path:
        return self.dir / "sshd_config.d" / "00-mfaplane.conf"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def location_options(self) -> list[str]:
        return ["--pam-service", self.service, "--pam-dir", "/etc/pam.d",
                "--sshd-config-dir", str(self.dir / "sshd_config.d"), "--config", str(self.config_path),
                "--lib-dir", str(self.dir / "lib"), "--state-dir", str(self.state_dir),
                "--syslog-socket", str(self.dir / "syslog.sock")]

    # -- the agent's own commands -----------------------------------------------------------------
    def install(self) -> subprocess.CompletedProcess:
        key_file = self.dir / "api-key"
        key_file.write_text(self._api_key + "\n")
        key_file.chmod(0o600)
        return self.run_agent("install", "--api-key-file", str(key_file), *self._install_options)

    def run_agent(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        """`python3 -m mfaplane_agent ...` in the host's Python, with this host's locations."""
        command = [str(HOST_PYTHON), "-m", "mfaplane_agent", *arguments, *self.location_options()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_SECONDS,
                              env={**os.environ, "PYTHONPATH": str(AGENT_SOURCE)})
        if check and done.returncode != 0:
            raise AssertionError(f"mfaplane_agent {arguments[0]} failed: {done.stderr.strip()}")
        return done

    # -- users and logins -------------------------------------------------------------------------
    def add_user(self, name: str | None = None) -> LocalUser:
        """A Unix user (no home) with a password and an ed25519 key in the AuthorizedKeysFile directory."""
        name = name or f"mfa{secrets.token_hex(5)}"
        password = secrets.token_urlsafe(12)
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True,
                       capture_output=True, timeout=WAIT_SECONDS)
        user = LocalUser(name, password, self._new_key(name))
        self.users.append(user)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True,
                       timeout=WAIT_SECONDS)
        return user

    def login(self, user: LocalUser, codes: tuple[str, ...] | list[str] = (), password: str | None = None,
              command: str = "id -un", offer_key: bool | None = None) -> LoginResult:
        """Logs in as `user`: the key first (publickey mode, or `offer_key`), then keyboard-interactive, where
        a password prompt gets `password` (default the user's own) and any other prompt the next of `codes`
        ("" once they run out). On success, runs `command` and keeps what it printed."""
        seen, answers = LoginResult(), list(codes)

        def answer(_title: str, _instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            replies = []
            for prompt, _echo in prompts:
                seen.prompts.append(prompt)
                if "password" in prompt.lower():
                    replies.append(user.password if password is None else password)
                else:
                    replies.append(answers.pop(0) if answers else "")
            return replies

        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_SECONDS) as connection:
            transport = paramiko.Transport(connection)
            transport.banner_timeout = transport.auth_timeout = WAIT_SECONDS
            try:
                transport.start_client(timeout=WAIT_SECONDS)
                if self.first_factor == "publickey" if offer_key is None else offer_key:
                    transport.auth_publickey(user.name, user.key)
                transport.auth_interactive(user.name, answer)
                seen.succeeded = transport.is_authenticated()
                seen.output = self._run(transport, command)
            except paramiko.AuthenticationException:
                seen.succeeded = False
            finally:
                transport.close()
        return seen

    def counters(self) -> dict[str, int]:
        """The agent's Prometheus textfile counters: sample (name and labels) -> count."""
        return counters.read(self.state_dir / counters.FILE_NAME)

    def wait_for_log(self, text: str) -> list[str]:
        """The captured syslog lines containing `text`, once there is at least one."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = [line for line in list(self.syslog_lines) if text in line]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no syslog line with {text!r}; got {self.syslog_lines}")

    def sshd_log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")

    # -- internals ----------------------------------------------------------------------------------
    def _prepare(self) -> None:
        for folder in ("keys", "sshd_config.d"):
            (self.dir / folder).mkdir(mode=0o755)
        if self._site_sshd_settings:
            (self.dir / "sshd_config.d" / "00-a-site.conf").write_text(self._site_sshd_settings)
        self.pristine_pam = DEBIAN_PAM_SSHD.read_bytes()
        self.pam_file.write_bytes(self.pristine_pam)
        shutil.copy2(SSHD, self.dir / self.service)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "host_key")],
                       check=True, capture_output=True, timeout=WAIT_SECONDS)
        self._capture_syslog()

    def _capture_syslog(self) -> None:
        self._syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._syslog.bind(str(self.dir / "syslog.sock"))
        self._syslog.settimeout(0.2)
        threading.Thread(target=self._read_syslog, args=(self._syslog,), daemon=True).start()

    def _read_syslog(self, receiver: socket.socket) -> None:
        while receiver.fileno() != -1:
            try:
                self.syslog_lines.append(receiver.recv(65536).decode(errors="replace").rstrip("\x00\n"))
            except TimeoutError:
                continue
            except OSError:
                return

    def _new_key(self, name: str) -> paramiko.Ed25519Key:
        private = self.dir / "keys" / f"{name}.private"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True,
                       capture_output=True, timeout=WAIT_SECONDS)
        shutil.move(f"{private}.pub", self.dir / "keys" / name)
        (self.dir / "keys" / name).chmod(0o644)
        return paramiko.Ed25519Key.from_private_key_file(str(private))

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.port = _free_port()
        config = self.dir / "sshd_config"
        # Debian's own layout: the drop-ins first (first value wins), then settings the drop-in must override
        config.write_text(
            f"Include {self.dir}/sshd_config.d/*.conf\n"
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.dir}/host_key\nPidFile {self.dir}/sshd.pid\n"
            f"AuthorizedKeysFile {self.dir}/keys/%u\nStrictModes no\n"
            "KbdInteractiveAuthentication no\nUsePAM yes\nPrintMotd no\nLogLevel VERBOSE\n"
        )
        log = (self.dir / "sshd.log").open("wb")
        # The environment systemd gives sshd, not the test runner's: a virtualenv's PATH or VIRTUAL_ENV would
        # reach the Python that pam_python embeds in sshd, which then fails in pam_setcred.
        self._sshd = subprocess.Popen([str(self.dir / self.service), "-D", "-e", "-f", str(config)],
                                      stdout=log, stderr=subprocess.STDOUT, env=SSHD_ENVIRONMENT)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.sshd_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port} within {WAIT_SECONDS:g} s")

    def _stop_sshd(self) -> None:
        if self._sshd and self._sshd.poll() is None:
            self._sshd.terminate()
            try:
                self._sshd.wait(WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self._sshd.kill()
                self._sshd.wait(WAIT_SECONDS)

    @staticmethod
    def _run(transport: paramiko.Transport, command: str) -> str:
        channel = transport.open_session(timeout=WAIT_SECONDS)
        channel.settimeout(WAIT_SECONDS)
        channel.exec_command(command)
        output = b""
        while chunk := channel.recv(65536):
            output += chunk
        return output.decode(errors="replace").strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
