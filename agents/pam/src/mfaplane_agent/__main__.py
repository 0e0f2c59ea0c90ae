"""`python3 -m mfaplane_agent install ...` and `python3 -m mfaplane_agent remove` (docs/agents.md)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from mfaplane_agent.config import UNREACHABLE_POLICIES, ConfigError
from mfaplane_agent.install import FIRST_FACTORS, InstallError, Locations, install, remove


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    where = Locations(**{field.name: getattr(arguments, field.name) for field in fields(Locations)})
    try:
        if os.geteuid() != 0:
            raise InstallError("run it as root: it writes the PAM and sshd configuration")
        if arguments.command == "install":
            messages = install(where, _settings(arguments), arguments.api_key_file, arguments.first_factor)
        else:
            messages = remove(where)
    except (InstallError, ConfigError) as error:
        print(f"mfaplane-agent: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(messages))
    return 0


def _settings(arguments: argparse.Namespace) -> dict[str, str]:
    settings = {
        "gateway_url": arguments.gateway_url, "system_id": arguments.system_id,
        "when_unreachable": arguments.when_unreachable, "timeout": arguments.timeout,
        "exclude_users": arguments.exclude_users, "exclude_groups": arguments.exclude_groups,
    }
    if arguments.ca_file:
        settings["ca_file"] = os.path.abspath(arguments.ca_file)
    return settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m mfaplane_agent",
                                     description="Install or remove the mfaplane SSH agent (a PAM module).")
    commands = parser.add_subparsers(dest="command", required=True)
    installing = commands.add_parser("install", help="install and configure the agent for sshd")
    installing.add_argument("--gateway-url", required=True, help="https://... (http only to a loopback address)")
    installing.add_argument("--system-id", required=True, help="the system's UUID in mfaplane")
    installing.add_argument("--api-key-file", required=True, help="a file holding the system agent key (mfp_...)")
    installing.add_argument("--ca-file", help="PEM CA bundle to verify the gateway with instead of the system's CAs")
    installing.add_argument("--when-unreachable", choices=UNREACHABLE_POLICIES, default="deny")
    installing.add_argument("--timeout", default="5", help="seconds per network operation (default 5)")
    installing.add_argument("--exclude-users", default="", help="comma-separated users never asked (e.g. breakglass)")
    installing.add_argument("--exclude-groups", default="", help="comma-separated groups never asked")
    installing.add_argument("--first-factor", choices=list(FIRST_FACTORS), default="publickey")
    for command in (installing, commands.add_parser("remove", help="remove the agent, restoring the PAM file")):
        _location_options(command)
    return parser


def _location_options(parser: argparse.ArgumentParser) -> None:
    for field in fields(Locations):
        parser.add_argument(f"--{field.name.replace('_', '-')}", default=field.default,
                            help=f"default {field.default}")


if __name__ == "__main__":
    sys.exit(main())
