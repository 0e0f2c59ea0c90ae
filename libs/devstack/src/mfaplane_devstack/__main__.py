"""`python -m mfaplane_devstack run` starts the whole platform locally; `mail` lists caught mail."""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from . import containers
from .certificates import ensure_pki
from .mail import RECEIVED_AT, envelope_recipients, read_mail
from .signing_keys import ensure_signing_keys, ensure_sso_signing_key
from .stack import HTTPS_SERVICES, KAFKA_CLIENTS, SERVICES, Stack, default_data_dir
from .supervisor import ChildFailed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mfaplane_devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start infrastructure and services; Ctrl-C stops everything")
    run_parser.add_argument("--data-dir", type=Path, default=None, help="default: $MFAPLANE_DATA_DIR or <repo>/.data")
    run_parser.add_argument("--infra-only", action="store_true", help="PostgreSQL, Kafka and SMTP only")
    run_parser.add_argument("--gateway-port", type=int, default=None, help="default: a free port")
    containers_parser = commands.add_parser("containers", help="run the test suite against servers in Docker")
    containers_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    mail_parser = commands.add_parser("mail", help="list the mail caught by the local SMTP catcher")
    mail_parser.add_argument("--data-dir", type=Path, default=None)
    pki_parser = commands.add_parser("pki", help="write the embedded broker's CA and the TLS certificates of the "
                                                 "broker and of each Kafka client (docker-compose's init container)")
    pki_parser.add_argument("directory", type=Path)
    pki_parser.add_argument("--host", action="append", default=[],
                            help="another name for the broker certificate (besides localhost and 127.0.0.1), "
                                 "e.g. kafka; repeatable")
    pki_parser.add_argument("--api-host", action="append", default=[], metavar="SERVICE=NAME",
                            help="another name for the HTTPS certificate of identity or mfa, e.g. identity=identity; "
                                 "repeatable")
    keys_parser = commands.add_parser("signing-keys", help="write each service's signing key, the public keys "
                                                           "and the gateway's SSO signing key")
    keys_parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pki":
        ensure_pki(args.directory, KAFKA_CLIENTS, server_hosts=args.host, apis=api_hosts(args.api_host))
        return 0
    if args.command == "signing-keys":
        ensure_signing_keys(args.directory, SERVICES)
        ensure_sso_signing_key(args.directory)
        return 0
    if args.command == "mail":
        return list_mail(args.data_dir or default_data_dir())
    if args.command == "containers":
        return containers.run([a for a in args.pytest_args if a != "--"])
    stack = Stack(args.data_dir)
    return run(stack, infra_only=args.infra_only, gateway_port=args.gateway_port or last_gateway_port(stack.data_dir))


def run(stack: Stack, *, infra_only: bool = False, gateway_port: int | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)  # explicitly: SIGINT starts out ignored in a background job
    try:
        stack.start_infra()
        if not infra_only:
            stack.start_services(gateway_port=gateway_port)
        summary = describe(stack)
        if not infra_only:
            (stack.data_dir / GATEWAY_PORT_FILE).write_text(f"{stack.ports['gateway']}\n")
            summary |= {f"{role}_api_key": stack.create_api_key(role, "make run") for role in ("admin", "portal")}
            summary |= console_login(stack)
        summary_file = stack.data_dir / "stack.json"
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")
        summary_file.chmod(0o600)
        print(render(summary), flush=True)
        watch(stack)
    except KeyboardInterrupt:
        pass
    except ChildFailed as failure:
        print(f"startup failed: {failure}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not abandon half-stopped children
        print("stopping ...", flush=True)
        stack.stop()
        (stack.data_dir / "stack.json").unlink(missing_ok=True)
        print("stopped", flush=True)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def watch(stack: Stack) -> None:
    """Block until interrupted, reporting any process that exits on its own."""
    reported: set[str] = set()
    while True:
        for name, code in stack.supervisor.exited().items():
            if name not in reported and not name.endswith("-migrate"):
                print(f"!! {name} exited with code {code}; see {stack.supervisor.log_path(name)}", flush=True)
                reported.add(name)
        time.sleep(1)


CONSOLE_LOGIN_FILE = "admin-login.json"
GATEWAY_PORT_FILE = "gateway-port"


def console_login(stack: Stack) -> dict[str, str]:
    """The first admin of the admin console, made once per data folder as an operator bootstraps one
    (`create-admin`) and kept in it (readable by its owner only) to be printed at every run; the admin
    sets up MFA at the first sign-in. Making admins through the API needs a signed-in admin."""
    path = stack.data_dir / CONSOLE_LOGIN_FILE
    if not path.exists():
        login = {"admin_email": f"admin-{secrets.token_hex(3)}@example.com",
                 "admin_password": secrets.token_urlsafe(12)}
        stack.create_admin(login["admin_email"], "First admin", login["admin_password"])
        path.touch(mode=0o600)
        path.write_text(json.dumps(login) + "\n")
    saved: dict[str, str] = json.loads(path.read_text())
    return saved


def last_gateway_port(data_dir: Path) -> int | None:
    """The gateway's port in this data folder's previous run, if it is free: the links in mail already
    caught, and a $GW already exported, keep working."""
    try:
        port = int((data_dir / GATEWAY_PORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


def describe(stack: Stack) -> dict[str, str]:
    """Where to reach everything (and, once services run, API keys made for this run)."""
    infra = stack.infra
    assert infra is not None, "the infrastructure starts first"
    summary: dict[str, str] = {}
    if stack.ports:
        gateway = stack.url("gateway")
        summary |= {"gateway": gateway, "api_docs": f"{gateway}/docs", "user_portal": f"{gateway}/portal",
                    "admin_console": f"{gateway}/admin",
                    "sso_discovery": f"{gateway}/.well-known/openid-configuration"}  # docs/sso.md
    summary |= {
        "mail": str(infra.maildir) if infra.maildir else f"external {infra.smtp_url}",
        "smtp": infra.smtp_url,
        "postgres": infra.database_url,
        "kafka": infra.kafka_bootstrap,
        **({"kafka_pki": str(stack.pki.directory)} if stack.pki else {}),  # mutual TLS: a client needs a certificate
        "logs": str(stack.supervisor.log_dir),
    }
    return summary


def render(summary: dict[str, str]) -> str:
    lines = [f"  {key:<14} {value}" for key, value in summary.items()]
    lines = ["mfaplane is running (Ctrl-C stops everything):", *lines]
    if "admin_api_key" in summary:
        lines += ["", "Admin console: sign in at {admin_console}/ as {admin_email} with the password {admin_password}"
                      " (set up MFA at the first sign-in)".format_map(summary),
                  "For the README's examples, paste:",
                  f"  export GW={shlex.quote(summary['gateway'])} KEY={shlex.quote(summary['admin_api_key'])}"]
    return "\n".join(lines)


def list_mail(data_dir: Path) -> int:
    for message in read_mail(data_dir / "mail"):
        to = ", ".join(envelope_recipients(message))
        print(f"{message[RECEIVED_AT]}  to {to}  {message['Subject']}")
    return 0


def api_hosts(given: list[str]) -> dict[str, list[str]]:
    """{service: [names]} for the HTTPS certificates of the services the gateway calls."""
    hosts: dict[str, list[str]] = {service: [] for service in HTTPS_SERVICES}
    for pair in given:
        service, _, name = pair.partition("=")
        if service not in hosts or not name:
            raise SystemExit(f"--api-host takes SERVICE=NAME with SERVICE one of {', '.join(HTTPS_SERVICES)}")
        hosts[service].append(name)
    return hosts


if __name__ == "__main__":
    sys.exit(main())
