"""The agent's configuration rules and the installer's PAM file edits, without sshd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mfaplane_agent import config as agent_config
from mfaplane_agent.config import ConfigError
from mfaplane_agent.install import BEGIN, END, InstallError, with_agent, without_agent

SYSTEM_ID = "0b5a7f6e-4c1d-4f8e-9a3b-2d6c8e1f0a47"
KEY = "mfp_a-secret-agent-key-0123456789"
DEBIAN_AUTH = "# Standard Un*x authentication.\n@include common-auth\n\naccount required pam_nologin.so\n"
LINE = "auth required pam_python.so /usr/lib/mfaplane-agent/mfaplane_agent/pam_entry.py config=/etc/x.conf\n"


def write_config(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "agent.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


def minimal(**extra: str) -> str:
    values = {"gateway_url": "https://mfa.example.com", "system_id": SYSTEM_ID, "api_key": KEY, **extra}
    return "".join(f"{key} = {value}\n" for key, value in values.items())


def test_a_private_file_gives_the_defaults_of_a_fleet_agent(tmp_path: Path) -> None:
    config = agent_config.load(write_config(tmp_path, "# comment\n\n" + minimal()))
    assert (config.when_unreachable, config.timeout, config.exclude_users) == ("deny", 5.0, frozenset())
    assert (config.gateway_url, config.system_id, config.api_key) == ("https://mfa.example.com", SYSTEM_ID, KEY)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o660])
def test_a_file_others_may_read_or_write_is_refused_and_the_key_is_not_repeated(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        agent_config.load(write_config(tmp_path, minimal(), mode))
    assert KEY not in str(refused.value)


def test_a_file_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, minimal())
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by root"):
        agent_config.load(path)


@pytest.mark.parametrize("url", [
    "https://mfa.example.com", "https://mfa.example.com:8443/prefix", "http://127.0.0.1:8080",
    "http://localhost:8080", "http://[::1]:8080", "http://127.9.9.9",
])
def test_https_anywhere_and_http_only_to_loopback(url: str) -> None:
    assert agent_config.check_gateway_url(url) == url


@pytest.mark.parametrize("url, complaint", [
    ("http://mfa.example.com", "only to a loopback"),
    ("http://10.0.0.5:8080", "only to a loopback"),
    ("http://127.0.0.1.example.com", "only to a loopback"),
    ("ftp://mfa.example.com", "must be https"),
    ("mfa.example.com", "must be https"),
    ("https://", "must be https"),
    ("https://mfa.example.com?x=1", "query"),
    ("https://mfa.example.com:99999", "invalid port"),
])
def test_other_urls_are_refused_when_the_config_is_loaded(tmp_path: Path, url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        agent_config.load(write_config(tmp_path, minimal(gateway_url=url)))


@pytest.mark.parametrize("line_break", ["\n", "\r", "\x0b", "\x85", "\u2028", "\u2029"])
def test_a_value_that_would_render_as_two_lines_is_refused(line_break: str) -> None:
    """The attack: a line break in an installer option smuggles a line, here a CA of the attacker's choosing,
    into the file `render` writes."""
    with pytest.raises(ConfigError, match="one line"):
        agent_config.from_values({"gateway_url": f"https://mfa.example.com/x{line_break}ca_file = /tmp/attacker-ca.pem",
                                  "system_id": SYSTEM_ID, "api_key": KEY})
    with pytest.raises(ConfigError, match="one line") as refused:
        agent_config.from_values({"gateway_url": "https://mfa.example.com", "system_id": SYSTEM_ID,
                                  "api_key": f"{KEY}{line_break}x"})
    assert KEY not in str(refused.value)


def test_credentials_in_the_url_are_refused_without_being_repeated() -> None:
    with pytest.raises(ConfigError) as refused:
        agent_config.check_gateway_url("https://agent:hunter2secret@mfa.example.com")
    assert "hunter2secret" not in str(refused.value)


@pytest.mark.parametrize("setting, value, complaint", [
    ("system_id", "not-a-uuid", "not a UUID"),
    ("when_unreachable", "open", "when_unreachable"),
    ("timeout", "0", "timeout"),
    ("timeout", "120", "timeout"),
    ("exclude_users", "root, bad name", "not a user or group name"),
    ("colour", "blue", "expected one of"),
])
def test_bad_values_are_refused(tmp_path: Path, setting: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        agent_config.load(write_config(tmp_path, minimal(**{setting: value})))


def test_a_line_without_a_value_is_refused_with_its_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 4"):
        agent_config.load(write_config(tmp_path, minimal() + "no equals sign\n"))


def test_a_key_set_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set twice"):
        agent_config.load(write_config(tmp_path, minimal() + "api_key = mfp_other\n"))


def test_what_the_installer_renders_loads_back_the_same(tmp_path: Path) -> None:
    config = agent_config.from_values({"gateway_url": "https://mfa.example.com/", "system_id": SYSTEM_ID.upper(),
                                       "api_key": KEY, "when_unreachable": "allow", "timeout": "2.5",
                                       "exclude_users": "root, breakglass", "exclude_groups": "wheel",
                                       "ca_file": "/etc/mfaplane/ca.pem"})
    assert agent_config.load(write_config(tmp_path, agent_config.render(config))) == config


def test_publickey_mode_replaces_common_auth_and_remove_restores_it() -> None:
    installed = with_agent(DEBIAN_AUTH, LINE, "publickey")
    assert installed.splitlines() == ["# Standard Un*x authentication.", BEGIN.strip(),
                                      "# disabled by mfaplane-agent: @include common-auth", LINE.strip(),
                                      END.strip(), "", "account required pam_nologin.so"]
    assert without_agent(installed) == DEBIAN_AUTH


def test_password_mode_runs_after_the_unix_password() -> None:
    installed = with_agent(DEBIAN_AUTH, LINE, "password")
    assert installed.splitlines()[1:5] == ["@include common-auth", BEGIN.strip(), LINE.strip(), END.strip()]
    assert without_agent(installed) == DEBIAN_AUTH


def test_installing_again_replaces_the_block_even_across_modes() -> None:
    once = with_agent(DEBIAN_AUTH, LINE, "publickey")
    assert with_agent(once, LINE, "publickey") == once
    assert with_agent(once, LINE, "password") == with_agent(DEBIAN_AUTH, LINE, "password")


def test_a_pam_file_without_common_auth_or_with_a_broken_block_is_left_alone() -> None:
    with pytest.raises(InstallError, match="by hand"):
        with_agent("auth required pam_unix.so\n", LINE, "publickey")
    with pytest.raises(InstallError, match="without"):
        without_agent(DEBIAN_AUTH + BEGIN)
