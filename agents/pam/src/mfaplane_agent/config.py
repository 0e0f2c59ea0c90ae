"""The agent's configuration file: `key = value` lines, owned by root and unreadable by anyone else.

The file holds the agent's API key, so a file that others can read (the key may have leaked) or
write (the gateway URL or the failure policy may have been changed) is refused, and every login
through the agent is then denied.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 30.0
UNREACHABLE_POLICIES = ("deny", "allow")
DEFAULT_PATH = "/etc/mfaplane/agent.conf"
DEFAULT_STATE_DIR = "/var/lib/mfaplane-agent"
# A Unix user or group name as useradd accepts it (Debian's default NAME_REGEX, plus dots and capitals)
_ACCOUNT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")
_KEYS = {"gateway_url", "system_id", "api_key", "ca_file", "timeout", "when_unreachable",
         "exclude_users", "exclude_groups", "state_dir"}


class ConfigError(Exception):
    """The configuration cannot be trusted or used; the message never contains the key."""


@dataclass(frozen=True)
class AgentConfig:
    gateway_url: str
    system_id: str
    api_key: str
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    when_unreachable: str = "deny"
    exclude_users: frozenset[str] = frozenset()
    exclude_groups: frozenset[str] = frozenset()
    state_dir: str = DEFAULT_STATE_DIR


def load(path: str | Path) -> AgentConfig:
    """Reads and checks the file; raises ConfigError when it is unsafe or invalid."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            check_private(os.fstat(file.fileno()), path)
            text = file.read().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    return from_values(parse(text, path))


def check_private(status: os.stat_result, path: Path) -> None:
    if status.st_uid != 0:
        raise ConfigError(f"{path} must be owned by root")
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(f"{path} must be a regular file")
    if status.st_mode & 0o077:
        raise ConfigError(f"{path} must not be readable or writable by group or others (chmod 600)")


def parse(text: str, path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or key not in _KEYS:
            raise ConfigError(f"{path} line {number}: expected one of {', '.join(sorted(_KEYS))} = value")
        if key in values:
            raise ConfigError(f"{path} line {number}: {key} is set twice")
        values[key] = value.strip()
    return values


def from_values(values: dict[str, str]) -> AgentConfig:
    for key, value in values.items():
        if not value.isprintable():  # a line break would let an installer option write a line of its own
            raise ConfigError(f"{key} must be one line of printable characters")
    for required in ("gateway_url", "system_id", "api_key"):
        if not values.get(required):
            raise ConfigError(f"{required} is missing")
    return AgentConfig(
        gateway_url=check_gateway_url(values["gateway_url"]),
        system_id=check_system_id(values["system_id"]),
        api_key=values["api_key"],
        ca_file=values.get("ca_file") or None,
        timeout=check_timeout(values.get("timeout", str(DEFAULT_TIMEOUT_SECONDS))),
        when_unreachable=check_policy(values.get("when_unreachable", "deny")),
        exclude_users=account_names(values.get("exclude_users", ""), "exclude_users"),
        exclude_groups=account_names(values.get("exclude_groups", ""), "exclude_groups"),
        state_dir=values.get("state_dir") or DEFAULT_STATE_DIR,
    )


def check_gateway_url(url: str) -> str:
    """HTTPS anywhere; plain HTTP only to a loopback address, where nothing crosses a network."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError("the gateway URL must not carry credentials; the key goes in the config file")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"gateway URL {url!r} must be https://host[:port][/path]")
    if parts.query or parts.fragment:
        raise ConfigError(f"gateway URL {url!r} must not carry a query or a fragment")
    try:
        _ = parts.port  # read to raise ValueError on a bad port
    except ValueError:
        raise ConfigError(f"gateway URL {url!r} has an invalid port") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"gateway URL {url!r}: plain http is allowed only to a loopback address; use https")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_system_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ConfigError(f"system id {value!r} is not a UUID") from None


def check_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}")
    return seconds


def check_policy(value: str) -> str:
    if value not in UNREACHABLE_POLICIES:
        raise ConfigError(f"when_unreachable must be one of {', '.join(UNREACHABLE_POLICIES)}")
    return value


def account_names(value: str, key: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if not _ACCOUNT_NAME.match(name):
            raise ConfigError(f"{key}: {name!r} is not a user or group name")
    return names


def render(config: AgentConfig) -> str:
    """The file the installer writes; `load` reads it back to the same configuration."""
    lines = [
        "# mfaplane SSH agent (docs/agents.md). Owned by root, mode 0600: it holds the agent's key.",
        f"gateway_url = {config.gateway_url}",
        f"system_id = {config.system_id}",
        f"api_key = {config.api_key}",
        f"timeout = {config.timeout:g}",
        f"when_unreachable = {config.when_unreachable}",
        f"exclude_users = {','.join(sorted(config.exclude_users))}",
        f"exclude_groups = {','.join(sorted(config.exclude_groups))}",
        f"state_dir = {config.state_dir}",
    ]
    if config.ca_file:
        lines.append(f"ca_file = {config.ca_file}")
    return "".join(line.rstrip() + "\n" for line in lines)
