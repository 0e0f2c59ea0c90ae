"""`python3 -m mfaplane_agent install/remove` into temporary locations (no sshd): what it writes, and
the one-line errors that stop it before it writes anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mfaplane_agent.__main__ import main

SYSTEM_ID = "0b5a7f6e-4c1d-4f8e-9a3b-2d6c8e1f0a47"
KEY = "mfp_a-secret-agent-key-0123456789"
DEBIAN_AUTH = "@include common-auth\naccount required pam_nologin.so\n"


@pytest.fixture
def host(tmp_path: Path) -> dict:
    if os.geteuid() != 0:
        pytest.skip("the install command needs root")
    (tmp_path / "pam.d").mkdir()
    (tmp_path / "pam.d" / "sshd").write_text(DEBIAN_AUTH)
    (tmp_path / "sshd_config.d").mkdir()
    (tmp_path / "key").write_text(KEY + "\n")
    locations = ["--pam-dir", str(tmp_path / "pam.d"), "--sshd-config-dir", str(tmp_path / "sshd_config.d"),
                 "--config", str(tmp_path / "etc" / "agent.conf"), "--lib-dir", str(tmp_path / "lib"),
                 "--state-dir", str(tmp_path / "state")]
    return {"dir": tmp_path, "locations": locations}


def install(host: dict, *options: str) -> int:
    required = {"--gateway-url": "https://mfa.example.com", "--system-id": SYSTEM_ID,
                "--api-key-file": str(host["dir"] / "key")}
    given = dict(zip(options[::2], options[1::2], strict=True))
    arguments = [item for pair in {**required, **given}.items() for item in pair]
    return main(["install", *arguments, *host["locations"]])


def test_install_writes_a_root_only_config_a_root_owned_copy_and_the_sshd_drop_in(host, capsys) -> None:
    assert install(host, "--exclude-users", "root") == 0
    config = host["dir"] / "etc" / "agent.conf"
    status = config.stat()
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (0, 0o600)
    assert f"api_key = {KEY}" in config.read_text()
    assert (host["dir"] / "sshd_config.d" / "00-mfaplane.conf").read_text().splitlines()[1:] == [
        "UsePAM yes", "KbdInteractiveAuthentication yes", "PasswordAuthentication no",
        "AuthenticationMethods publickey,keyboard-interactive"]
    for path in [host["dir"] / "lib", *(host["dir"] / "lib").rglob("*")]:
        assert path.stat().st_uid == 0 and not path.stat().st_mode & 0o022, path
    assert (host["dir"] / "lib" / "mfaplane_agent" / "pam_entry.py").is_file()
    shown = capsys.readouterr()
    assert "Reload sshd" in shown.out and KEY not in shown.out + shown.err


def test_remove_restores_the_pam_file_and_deletes_what_install_wrote(host, capsys) -> None:
    assert install(host) == 0 and install(host, "--first-factor", "password") == 0
    assert main(["remove", *host["locations"]]) == 0
    assert (host["dir"] / "pam.d" / "sshd").read_text() == DEBIAN_AUTH
    assert sorted(path.name for path in host["dir"].iterdir()) == ["etc", "key", "pam.d", "sshd_config.d", "state"]
    assert list((host["dir"] / "sshd_config.d").iterdir()) == list((host["dir"] / "etc").iterdir()) == []
    assert "Reload sshd" in capsys.readouterr().out


def test_an_earlier_drop_in_that_would_win_is_pointed_out(host, capsys) -> None:
    (host["dir"] / "sshd_config.d" / "00-a-site.conf").write_text("AuthenticationMethods any\n")
    assert install(host) == 0
    assert "00-a-site.conf sets AuthenticationMethods before 00-mfaplane.conf" in capsys.readouterr().out


@pytest.mark.parametrize("option, value, complaint", [
    ("--gateway-url", "mfa.example.com", "must be https"),
    ("--gateway-url", "http://mfa.example.com", "plain http is allowed only to a loopback address"),
    ("--system-id", "system-7", "is not a UUID"),
    ("--api-key-file", "/nonexistent/key", "cannot read the API key file /nonexistent/key"),
    ("--ca-file", "/nonexistent/ca.pem", "CA file /nonexistent/ca.pem does not exist"),
    ("--exclude-users", "root;halt", "not a user or group name"),
    ("--timeout", "soon", "timeout"),
    ("--gateway-url", "https://mfa.example.com/x\nca_file = /tmp/attacker-ca.pem", "one line"),
    ("--gateway-url", "https://mfa.example.com/x\u2028ca_file = /tmp/attacker-ca.pem", "one line"),
])
def test_bad_input_is_one_clear_line_and_nothing_is_written(host, capsys, option, value, complaint) -> None:
    assert install(host, option, value) == 2
    error = capsys.readouterr().err
    assert error.startswith("mfaplane-agent: error: ") and complaint in error and error.count("\n") == 1
    assert (host["dir"] / "pam.d" / "sshd").read_text() == DEBIAN_AUTH
    assert not (host["dir"] / "etc").exists() and not (host["dir"] / "lib").exists()


def test_a_key_file_holding_something_else_is_refused_without_echoing_it(host, capsys) -> None:
    (host["dir"] / "key").write_text("password: hunter2-not-a-key\n")
    assert install(host) == 2
    error = capsys.readouterr().err
    assert "mfp_" in error and "hunter2" not in error
