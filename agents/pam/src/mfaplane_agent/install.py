"""Installs the agent on a host and removes it again, leaving the PAM file as it was, byte for byte.

Everything the agent adds to the PAM file sits between two marker lines; a line it disables is kept
inside the block behind a prefix, so `remove` puts it back exactly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mfaplane_agent import config as agent_config
from mfaplane_agent.hostlog import DEFAULT_SOCKET

BEGIN = "# BEGIN mfaplane-agent\n"
END = "# END mfaplane-agent\n"
REPLACED = "# disabled by mfaplane-agent: "
COMMON_AUTH = "@include common-auth"
DROP_IN = "00-mfaplane.conf"
PACKAGE = "mfaplane_agent"
FIRST_FACTORS = {"publickey": "publickey,keyboard-interactive", "password": "keyboard-interactive"}
# Settings that only the first occurrence of decides, in sshd's order of reading
_SSHD_SETTINGS = ("UsePAM", "KbdInteractiveAuthentication", "PasswordAuthentication", "AuthenticationMethods")


class InstallError(Exception):
    pass


@dataclass(frozen=True)
class Locations:
    pam_service: str = "sshd"
    pam_dir: str = "/etc/pam.d"
    sshd_config_dir: str = "/etc/ssh/sshd_config.d"
    config: str = agent_config.DEFAULT_PATH
    lib_dir: str = "/usr/lib/mfaplane-agent"
    state_dir: str = agent_config.DEFAULT_STATE_DIR
    syslog_socket: str = DEFAULT_SOCKET

    @property
    def pam_file(self) -> Path:
        return Path(self.pam_dir) / self.pam_service

    @property
    def drop_in(self) -> Path:
        return Path(self.sshd_config_dir) / DROP_IN


def install(where: Locations, settings: dict[str, str], api_key_file: str, first_factor: str) -> list[str]:
    """Checks everything, then writes; returns what the operator should read."""
    if first_factor not in FIRST_FACTORS:
        raise InstallError(f"--first-factor must be one of {', '.join(FIRST_FACTORS)}")
    _check_paths(where)
    config = agent_config.from_values({**settings, "api_key": read_api_key(api_key_file),
                                       "state_dir": where.state_dir})
    if config.ca_file and not Path(config.ca_file).is_file():
        raise InstallError(f"CA file {config.ca_file} does not exist")
    pam_text = with_agent(_read(where.pam_file), pam_line(where, first_factor), first_factor)

    _copy_package(Path(where.lib_dir))
    _write(Path(where.config), agent_config.render(config), 0o600)
    _make_dir(Path(where.state_dir))
    _write(where.pam_file, pam_text, where.pam_file.stat().st_mode & 0o7777)
    _write(where.drop_in, sshd_drop_in(first_factor), 0o644)
    return [*_earlier_sshd_settings(where.drop_in),
            f"mfaplane-agent installed for PAM service {where.pam_service} ({first_factor} first, then a code "
            f"when the gateway asks for one; gateway unreachable: {config.when_unreachable}).",
            "Reload sshd to apply it (systemctl reload ssh), and keep this session open until a new login works."]


def remove(where: Locations) -> list[str]:
    text = _read(where.pam_file)
    restored = without_agent(text)
    if restored != text:
        _write(where.pam_file, restored, where.pam_file.stat().st_mode & 0o7777)
    where.drop_in.unlink(missing_ok=True)
    Path(where.config).unlink(missing_ok=True)
    _remove_package(Path(where.lib_dir))
    return [f"mfaplane-agent removed from PAM service {where.pam_service}; its counters stay in {where.state_dir}.",
            "Reload sshd to apply it (systemctl reload ssh)."]


def read_api_key(path: str) -> str:
    try:
        key = Path(path).read_text().strip()
    except OSError as error:
        raise InstallError(f"cannot read the API key file {path}: {error.strerror}") from None
    if not key.startswith("mfp_") or any(character.isspace() for character in key):
        raise InstallError(f"the API key file {path} must hold one system agent key (mfp_...) and nothing else")
    return key


def pam_line(where: Locations, first_factor: str) -> str:
    arguments = [f"config={where.config}", f"first_factor={first_factor}"]
    if where.syslog_socket != DEFAULT_SOCKET:
        arguments.append(f"syslog_socket={where.syslog_socket}")
    entry = Path(where.lib_dir) / PACKAGE / "pam_entry.py"
    return f"auth required pam_python.so {entry} {' '.join(arguments)}\n"


def with_agent(pam_text: str, line: str, first_factor: str) -> str:
    """The PAM file with the agent's block; an earlier block is replaced, never duplicated."""
    lines = without_agent(pam_text).splitlines(keepends=True)
    for index, existing in enumerate(lines):
        if existing.strip() == COMMON_AUTH:
            if first_factor == "publickey":  # the key was the first factor: no Unix password asked
                block = [BEGIN, REPLACED + existing, line, END]
                return "".join(lines[:index] + block + lines[index + 1:])
            return "".join(lines[:index + 1] + [BEGIN, line, END] + lines[index + 1:])
    raise InstallError(f"no '{COMMON_AUTH}' line in the PAM file; add this line to its auth section by hand: "
                       f"{line.strip()}")


def without_agent(pam_text: str) -> str:
    kept, inside = [], False
    for line in pam_text.splitlines(keepends=True):
        if line == BEGIN and not inside:
            inside = True
        elif line == END and inside:
            inside = False
        elif not inside:
            kept.append(line)
        elif line.startswith(REPLACED):
            kept.append(line[len(REPLACED):])
    if inside:
        raise InstallError(f"the PAM file has '{BEGIN.strip()}' without '{END.strip()}'; fix it by hand")
    return "".join(kept)


def sshd_drop_in(first_factor: str) -> str:
    return (
        "# Written by `python3 -m mfaplane_agent install`; `python3 -m mfaplane_agent remove` deletes it.\n"
        "UsePAM yes\n"
        "KbdInteractiveAuthentication yes\n"
        "PasswordAuthentication no\n"
        f"AuthenticationMethods {FIRST_FACTORS[first_factor]}\n"
    )


def _earlier_sshd_settings(drop_in: Path) -> list[str]:
    """sshd keeps the first value it reads: a drop-in sorted before ours that sets these wins."""
    warnings = []
    for other in sorted(drop_in.parent.glob("*.conf")):
        if other.name >= drop_in.name:
            break
        for line in other.read_text(errors="replace").splitlines():
            words = line.split()
            if words and words[0].lower() in {setting.lower() for setting in _SSHD_SETTINGS}:
                warnings.append(f"warning: {other} sets {words[0]} before {drop_in.name}; sshd uses the first value")
    return warnings


def _check_paths(where: Locations) -> None:
    for name, value in vars(where).items():
        if not value or any(character.isspace() for character in value):
            raise InstallError(f"--{name.replace('_', '-')} must be a path without spaces")
    if not where.pam_file.is_file():
        raise InstallError(f"PAM file {where.pam_file} does not exist")
    if not Path(where.sshd_config_dir).is_dir():
        raise InstallError(f"sshd drop-in directory {where.sshd_config_dir} does not exist")


def _copy_package(lib_dir: Path) -> None:
    """pam_python runs this code as root: only root may change it."""
    _make_dir(lib_dir)
    staged, target = lib_dir / f"{PACKAGE}.new", lib_dir / PACKAGE
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(Path(__file__).parent, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [staged, *staged.rglob("*")]:
        os.chown(path, 0, 0)
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staged, target)


def _remove_package(lib_dir: Path) -> None:
    shutil.rmtree(lib_dir / PACKAGE, ignore_errors=True)
    try:
        lib_dir.rmdir()
    except OSError:
        pass  # absent, or holding files that are not ours


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise InstallError(f"cannot read {path}: {error.strerror}") from None


def _write(path: Path, text: str, mode: int) -> None:
    """Replaces the file in one rename, created with its final mode so no one can read it in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.mfaplane-new")
    staged.unlink(missing_ok=True)
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as file:
        os.fchown(file.fileno(), 0, 0)
        os.fchmod(file.fileno(), mode)
        file.write(text)
    os.replace(staged, path)
