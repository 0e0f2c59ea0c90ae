"""The whole platform on one machine: infrastructure plus the five services, all data in one folder.

Layout of the data folder: `postgres/` (cluster), `mail/` (Maildir of the SMTP catcher),
`logs/<name>.log` (one per process), `pki/` (the stack's CA with the broker's, the Kafka clients'
and identity's and mfa's HTTPS certificates, and each service's signing key). Each piece
of infrastructure is replaced by an external server when its variable is set: `DATABASE_URL`,
`KAFKA_BOOTSTRAP_SERVERS` (with KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_*, KAFKA_SASL_*, passed on as they
are), `SMTP_URL` (`smtp://host:port`). The embedded broker speaks mutual TLS only: every client
(`kafka_env`, `kafka_client_options`) presents a certificate of its own, issued by the stack's CA.

    stack = Stack(tmp_path, environ={})        # {}: always embedded servers
    infra = stack.start_infra()
    stack.start_services({"MFA_ENCRYPTION_KEYS": "..."})
    httpx.get(stack.url("gateway") + "/readyz")
    stack.stop()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from mfaplane_contracts.topics import ALL_TOPICS, CONSUMER_GROUPS, consumer_group_ids

from .certificates import Pki, ensure_pki, write_file
from .kafka import (
    ADMIN_CLIENT,
    SECURITY_NAMES,
    client_options,
    ensure_topics,
    run_blocking,
    security_env,
    start_kafka,
    tls_env,
)
from .mail import start_smtp_catcher
from .postgres import ensure_tls, start_postgres
from .signing_keys import ensure_signing_keys, ensure_sso_signing_key, private_key_path, public_keys_path
from .supervisor import ChildFailed, ChildSpec, Supervisor, free_port, http_ok, listens_on, log_tail

SERVICES = ("identity", "mfa", "scheduler", "notifier", "gateway")
INFRA = ("postgres", "kafka", "kafka-tls", "smtp")  # kafka-tls: the embedded broker's TLS terminator
HTTPS_SERVICES = ("identity", "mfa")  # what the gateway calls, over HTTPS verified with the stack's CA
KAFKA_CLIENTS = (*SERVICES, ADMIN_CLIENT, "tests")  # the client certificates made with the embedded broker's CA
HOST = "127.0.0.1"
MIGRATE_TIMEOUT = 120.0
SERVICE_READY_TIMEOUT = 60.0
GROUP_SETTLE_TIMEOUT = 30.0
SMTP_USER = "mfaplane"  # the embedded catcher's login
API_KEY_DAYS = 365  # the longest identity allows (api_keys.MAX_LIFETIME)


def _fresh_dev_secrets() -> dict[str, str]:
    return {
        "MFA_ENCRYPTION_KEYS": json.dumps({"dev-1": base64.b64encode(secrets.token_bytes(32)).decode()}),
        "MFA_ACTIVE_KEY_ID": "dev-1",
        "GATEWAY_SIGNING_KEY": secrets.token_urlsafe(48),
        "PASSWORD_RESET_KEY": secrets.token_urlsafe(48),  # identity's and the notifier's
    }


def default_data_dir() -> Path:
    """`$MFAPLANE_DATA_DIR`, else `<repo>/.data` (git-ignored)."""
    if "MFAPLANE_DATA_DIR" in os.environ:
        return Path(os.environ["MFAPLANE_DATA_DIR"])
    repo = Path(__file__).resolve().parents[4]
    return (repo if (repo / "libs" / "devstack").is_dir() else Path.cwd()) / ".data"


@dataclass(frozen=True)
class Infra:
    database_url: str
    kafka_bootstrap: str
    smtp_host: str
    smtp_port: int
    maildir: Path | str | None  # a Mailpit API URL, or None, when mail goes to an external SMTP server
    # The embedded catcher requires STARTTLS with a certificate from this CA, then a login.
    smtp_ca_file: Path | None = None
    smtp_login: tuple[str, Path] | None = None  # user, and the file holding its password

    @property
    def smtp_url(self) -> str:
        return f"smtp://{self.smtp_host}:{self.smtp_port}" + ("?starttls=true" if self.smtp_ca_file else "")

    def smtp_credentials(self) -> tuple[str | None, str | None]:
        """The login for a client of this SMTP server: user and password, or none."""
        if not self.smtp_login:
            return None, None
        return self.smtp_login[0], self.smtp_login[1].read_text().strip()

    def smtp_env(self) -> dict[str, str]:
        """The notifier's settings for this SMTP server."""
        env = {"SMTP_URL": self.smtp_url}
        if self.smtp_ca_file:
            env["SMTP_CA_FILE"] = str(self.smtp_ca_file)
        if self.smtp_login:
            env |= {"SMTP_USERNAME": self.smtp_login[0], "SMTP_PASSWORD_FILE": str(self.smtp_login[1])}
        return env


class Stack:
    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        durable: bool = True,
        log_level: str | None = None,
    ) -> None:
        """`environ` is where external servers are looked up (default `os.environ`).

        `durable=False` skips initdb's fsync, for throw-away test clusters.
        """
        self.data_dir = Path(data_dir or default_data_dir()).absolute()
        self.environ = os.environ if environ is None else environ
        self.durable = durable
        self.log_level = log_level or os.environ.get("LOG_LEVEL", "INFO")
        self.supervisor = Supervisor(self.data_dir / "logs")
        self.infra: Infra | None = None
        self.pki: Pki | None = None  # the embedded broker's CA and certificates; None with an external broker
        self.https: Pki | None = None  # the CA and certificates of the HTTPS APIs (HTTPS_SERVICES)
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}  # each process's METRICS_PORT, apart from its API
        self.extra_env: dict[str, str] = {}
        self.replicas: dict[str, str] = {}  # a replica's process name -> its service

    # -- infrastructure -------------------------------------------------------------------

    def start_infra(self) -> Infra:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.environ.get("DATABASE_URL") or start_postgres(
            self.supervisor, self.data_dir / "postgres", ensure_tls(self.data_dir / "pki"), durable=self.durable
        )
        kafka_bootstrap = self.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not kafka_bootstrap:
            self.pki = ensure_pki(self.data_dir / "pki", KAFKA_CLIENTS)
            kafka_bootstrap = start_kafka(self.supervisor, self.pki)
        run_blocking(ensure_topics(client_options(self._kafka_env(kafka_bootstrap, ADMIN_CLIENT)), ALL_TOPICS))
        self.infra = Infra(database_url, kafka_bootstrap, *self._smtp())
        return self.infra

    def _smtp(self) -> tuple[str, int, Path | str | None] | tuple[str, int, Path, Path, tuple[str, Path]]:
        """Host, port and maildir of the SMTP server; for the embedded catcher, its CA and login too."""
        if self.environ.get("SMTP_URL"):
            url = urlsplit(self.environ["SMTP_URL"])
            # An external catcher with an API (Mailpit) can still be read by the tests.
            return url.hostname or HOST, url.port or 25, self.environ.get("MAILPIT_API_URL")
        maildir = self.data_dir / "mail"
        pki = ensure_pki(self.data_dir / "pki", (), apis={"smtp": ()})
        password = self.data_dir / "smtp-password"
        if not password.exists():
            write_file(password, secrets.token_urlsafe(24).encode(), 0o600)
        security = ["--tls-cert", str(pki.api_cert("smtp")), "--tls-key", str(pki.api_key("smtp")),
                    "--user", SMTP_USER, "--password-file", str(password)]
        port = start_smtp_catcher(self.supervisor, maildir, security=security)
        return HOST, port, maildir, pki.ca, (SMTP_USER, password)

    # -- services -------------------------------------------------------------------------

    def start_services(
        self,
        extra_env: Mapping[str, str] | None = None,
        services: Iterable[str] = SERVICES,
        *,
        gateway_port: int | None = None,
    ) -> None:
        """Run every service's migrations (in parallel), then start the services and wait until ready."""
        services = list(services)
        self.extra_env.update(extra_env or {})
        self.ports = {**self.ports, **{s: self.ports.get(s) or free_port() for s in (*SERVICES, *services)}}
        if gateway_port:
            self.ports["gateway"] = gateway_port
        self.migrate(services)
        if "gateway" in services and "REFERENCE_PORTAL_API_KEY" not in self.environ:
            self.extra_env.setdefault("REFERENCE_PORTAL_API_KEY", self.reference_portal_key())
        for service in services:
            self.supervisor.start(self._service_spec(service), wait=False)
        for service in services:
            self.supervisor.wait_ready(service)

    def migrate(self, services: Iterable[str] = SERVICES) -> None:
        names = {service: f"{service}-migrate" for service in services}
        for service, name in names.items():
            argv = [sys.executable, "-m", f"mfaplane_{service}", "migrate"]
            self.supervisor.start(ChildSpec(name, argv, env=self.service_env(service)), wait=False)
        for name in names.values():
            code = self.supervisor.wait_exit(name, MIGRATE_TIMEOUT)
            if code != 0:
                log = self.supervisor.log_path(name)
                raise ChildFailed(f"{name} exited with code {code}; log {log}:\n{log_tail(log)}")

    def _service_spec(self, service: str, name: str | None = None,
                      extra_env: Mapping[str, str] | None = None) -> ChildSpec:
        name = name or service
        return ChildSpec(
            name=name,
            argv=[sys.executable, "-m", f"mfaplane_{service}", "serve"],
            env=self.service_env(service, {"HTTP_PORT": str(self.ports[name]),
                                           "METRICS_PORT": str(self._metrics_port(name)), **(extra_env or {})}),
            ready=lambda: self._serves(name),
            ready_timeout=SERVICE_READY_TIMEOUT,
        )

    def _serves(self, name: str) -> bool:
        """Ready, and on its own port: another process may have taken the port before it could bind it."""
        return (http_ok(self.url(name) + "/readyz", self.https_ca)() and
                listens_on(self.supervisor.pid(name), self.ports[name]))

    def start_replica(self, service: str, name: str, extra_env: Mapping[str, str] | None = None) -> str:
        """Start another process of `service` as `name`, like a second pod of its deployment.

        It shares the service's database schema, consumer group and settings (plus `extra_env`) and
        gets its own HTTP port and log. Waits until it is ready and returns its URL; `kill(name)`,
        `restart(name)` and `take_down(name)` work on it like on any other process.
        """
        if service not in SERVICES:
            raise ValueError(f"{service!r} is not a service; known: {SERVICES}")
        if name in (*SERVICES, *INFRA):
            raise ValueError(f"{name!r} is taken by the stack itself; name the replica e.g. {service}-2")
        self.ports[name] = self.ports.get(name) or free_port()
        self.replicas[name] = service
        self.supervisor.start(self._service_spec(service, name, extra_env))
        return self.url(name)

    def service_env(self, service: str, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment `service` runs with: ours, then the stack's settings, then the extras."""
        infra = self._require_infra()
        env = {
            **{k: v for k, v in os.environ.items() if k not in SECURITY_NAMES},  # those come from kafka_env
            "DATABASE_URL": infra.database_url,
            "DATABASE_SCHEMA": service,
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
            **infra.smtp_env(),
            "HTTP_HOST": HOST,
            "HTTP_PORT": str(self.ports[service]),
            "LOG_LEVEL": self.log_level,
            "PYTHONUNBUFFERED": "1",
            **self.kafka_env(service),
        }
        env.update({k: v for k, v in self.dev_secrets().items() if k not in self.environ})
        env.update(self.signing_env(service))
        if service in HTTPS_SERVICES:
            env["HTTP_TLS_CERT_FILE"] = str(self._https_pki().api_cert(service))
            env["HTTP_TLS_KEY_FILE"] = str(self._https_pki().api_key(service))
        if service == "gateway":
            env["PUBLIC_URL"] = self.url("gateway")
            env["SSO_SIGNING_KEYS_FILE"] = str(ensure_sso_signing_key(self.data_dir / "pki"))
            env["IDENTITY_URL"] = self.url("identity")
            env["MFA_URL"] = self.url("mfa")
            env["SERVICES_CA_FILE"] = str(self.https_ca)
        if service == "notifier":
            env["USER_PORTAL_URL"] = self.url("gateway") + "/portal"
            env["ADMIN_PORTAL_URL"] = self.url("gateway") + "/admin"
        return {**env, **self.extra_env, **(extra_env or {})}

    def dev_secrets(self) -> dict[str, str]:
        """Keys for local runs, made once per data folder (production takes them from a Secret); one that
        a folder made before it lacks is added to it."""
        path = self.data_dir / "dev-secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        fresh = _fresh_dev_secrets()
        if not stored.keys() >= fresh.keys():
            stored = {**fresh, **stored}
            path.write_text(json.dumps(stored))
            path.chmod(0o600)
        return stored

    def signing_env(self, service: str) -> dict[str, str]:
        """`service`'s own signing key and every service's public key, as files (made once per data folder)."""
        directory = self.data_dir / "pki"
        ensure_signing_keys(directory, SERVICES)
        return {"SERVICE_SIGNING_KEY_FILE": str(private_key_path(directory, service)),
                "SERVICE_PUBLIC_KEYS_FILE": str(public_keys_path(directory))}

    def kafka_env(self, client: str) -> dict[str, str]:
        """The variables with which a Kafka client named `client` (a service, "devstack", "tests", ...)
        connects: to the embedded broker, mutual TLS with that client's own certificate (made when
        missing); to an external broker, the KAFKA_* security variables of `environ` as they are."""
        return self._kafka_env(self._require_infra().kafka_bootstrap, client)

    def _kafka_env(self, bootstrap: str, client: str) -> dict[str, str]:
        if self.pki is None:
            return {**security_env(self.environ), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        if not self.pki.has_client(client):
            ensure_pki(self.pki.directory, [client])
        return tls_env(bootstrap, self.pki, client)

    def kafka_client_options(self, client: str = "tests") -> dict[str, Any]:
        """aiokafka keyword arguments (bootstrap_servers, security_protocol, ssl_context, ...) for a
        producer, consumer or admin client of the tests: `AIOKafkaConsumer(**stack.kafka_client_options())`."""
        return client_options(self.kafka_env(client))

    def create_api_key(self, role: str, name: str, system_id: str | None = None) -> str:
        """A new API key with `role` (a system agent's bound to `system_id`), made with the identity service's
        own CLI command. It lives as long as a key may: the tests move the services' clock on by days, and a
        `make run` data folder is kept."""
        bound = ("--system-id", system_id) if system_id else ()
        return self._identity_command("create-api-key", "--role", role, "--name", name,
                                      "--expires-in-days", str(API_KEY_DAYS), *bound)

    def create_admin(self, email: str, name: str, password: str) -> str:
        """A new admin, made with the identity service's own CLI command (the bootstrap path); its id."""
        return self._identity_command("create-admin", "--email", email, "--name", name, stdin=password + "\n")

    def _identity_command(self, *args: str, stdin: str | None = None) -> str:
        """The last line an operator command of identity prints."""
        argv = [sys.executable, "-m", "mfaplane_identity", *args]
        done = subprocess.run(argv, env=self.service_env("identity"), input=stdin, capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise ChildFailed(f"{args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    def reference_portal_key(self) -> str:
        """The `portal` key the gateway gives its reference portals (/admin, /portal), made once per data folder.

        Made after the migrations and before the gateway starts: identity's CLI writes it to the database.
        """
        path = self.data_dir / "reference-portal-key"
        if not path.exists():
            path.write_text(self.create_api_key("portal", "reference portals"))
            path.chmod(0o600)
        return path.read_text().strip()

    def _metrics_port(self, name: str) -> int:
        self.metrics_ports[name] = self.metrics_ports.get(name) or free_port()
        return self.metrics_ports[name]

    def metrics_url(self, name: str) -> str:
        """Where a service's (or replica's) /metrics is served: a port of its own, apart from the API."""
        if name not in self.metrics_ports:
            raise KeyError(f"{name} has no metrics port yet; call start_services first")
        return f"http://{HOST}:{self.metrics_ports[name]}"

    def url(self, service: str) -> str:
        """The API of a service or replica: HTTPS for HTTPS_SERVICES (verify it with `https_ca`)."""
        if service not in self.ports:
            raise KeyError(f"{service} has no port yet; call start_services first")
        scheme = "https" if self.replicas.get(service, service) in HTTPS_SERVICES else "http"
        return f"{scheme}://{HOST}:{self.ports[service]}"

    @property
    def https_ca(self) -> Path:
        """The CA that issued the HTTPS APIs' certificates (for a client's `verify`)."""
        return self._https_pki().ca

    def _https_pki(self) -> Pki:
        """The HTTPS APIs' certificates, made once per data folder."""
        if self.https is None:
            self.https = ensure_pki(self.data_dir / "pki", (), apis={service: () for service in HTTPS_SERVICES})
        return self.https

    # -- faults and shutdown --------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a service or embedded server's process group (SIGKILL: a crash; SIGSTOP: a hang)."""
        self.supervisor.kill(name, sig)

    def take_down(self, name: str) -> None:
        """Stop one process cleanly (e.g. "smtp" for an outage); `restart` brings it back.

        A service that consumes leaves its consumer group when stopped cleanly. Tansu (0.6.0) wedges
        a group when a member leaves while it rebalances: it keeps the departed member as leader,
        and every later member joins as a follower and waits forever for the leader's assignment.
        So a clean stop first waits (bounded) until the group is not rebalancing.
        """
        self._settle_group_of(name)
        self.supervisor.stop(name)

    def group_state(self, group: str) -> tuple[str, int]:
        """The state of a consumer group, by its Kafka id ("Stable", "Empty", or rebalancing), and its
        member count."""
        return run_blocking(_describe_group(self.kafka_client_options(ADMIN_CLIENT), group))

    def wait_for_group(self, service: str, members: int | None = None, timeout: float = 60.0) -> None:
        """Wait until each of `service`'s consumer groups (its own and any beside it) is stable, with
        `members` members when given: its consumers hold their partitions and consume."""
        for group in consumer_group_ids(service):
            last = self._await_group(group, lambda state, count: state == "Stable" and members in (None, count),
                                     timeout)
            if last is not None:
                raise ChildFailed(f"consumer group {group} not stable with {members} member(s) after "
                                  f"{timeout:.0f}s: {last[0]}, {last[1]} member(s)")

    def _settle_group_of(self, name: str) -> None:
        service = self.replicas.get(name, name)
        if service not in CONSUMER_GROUPS or not self.supervisor.is_running(name):
            return
        for group in consumer_group_ids(service):
            try:
                last = self._await_group(group, lambda state, _: state in ("Stable", "Empty", "Dead"),
                                         GROUP_SETTLE_TIMEOUT)
            except (KafkaError, OSError, IndexError):
                continue  # no broker (or no such group): nothing to wedge
            if last is not None:
                warnings.warn(f"stopping {name} while its consumer group {group} is {last[0]} after "
                              f"{GROUP_SETTLE_TIMEOUT:.0f}s: Tansu may wedge the group", stacklevel=3)

    def _await_group(self, group: str, settled: Callable[[str, int], bool], timeout: float) -> tuple[str, int] | None:
        """Polls the group until `settled(state, members)`; None then, or the last state and member
        count seen if it never came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state, count = self.group_state(group)
            if settled(state, count):
                return None
            if time.monotonic() > deadline:
                return state, count
            time.sleep(0.2)

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Stop (if running) and start again on the same port and data; wait until ready.

        With `extra_env` (services and replicas only) the process starts again with the stack's
        environment plus `extra_env`, and keeps it for later restarts.
        Restarting "kafka" loses all its messages (Tansu keeps them in memory); topics are recreated.
        """
        service = self.replicas.get(name, name)
        if extra_env is not None and service not in SERVICES:
            raise ValueError(f"only a service's environment can be changed, not {name!r}'s")
        self._settle_group_of(name)  # see take_down
        if name == "kafka":
            self._restart_broker()
        elif extra_env is None:
            self.supervisor.restart(name)
        else:
            self.supervisor.stop(name)
            self.supervisor.start(self._service_spec(service, name, extra_env))

    def _restart_broker(self) -> None:
        """Restart the broker with the catalog's topics created before any service reaches it.

        A production broker is run with topic auto-creation off, and its topics come back from their
        definitions (deploy/k8s/base/kafkatopics.yaml). Tansu cannot turn auto-creation off: the first
        service to ask for a topic would create it with 4 partitions instead of the catalog's 6. And a
        create racing with that leaves Tansu (0.6.0) inconsistent: produces fail with AlreadyExists,
        and a partition's end offset (1) fell short of the records it served (9), so a consumer group
        stayed behind it for good. So the services are paused (SIGSTOP) from the old broker's exit
        until the topics exist, as if the broker had come back with them.
        """
        self.supervisor.stop("kafka")
        services = [n for n in self.supervisor.names() if n not in INFRA]
        try:
            self._signal_running(services, signal.SIGSTOP)
            self.supervisor.restart("kafka")  # starts it again: it is stopped
            run_blocking(ensure_topics(self.kafka_client_options(ADMIN_CLIENT), ALL_TOPICS))
        finally:
            self._signal_running(services, signal.SIGCONT)

    def _signal_running(self, names: list[str], sig: int) -> None:
        for name in names:
            with contextlib.suppress(ChildFailed):  # exited meanwhile
                self.supervisor.kill(name, sig)

    def stop(self) -> None:
        """Stop everything: services first, then the infrastructure."""
        self.supervisor.stop_all()

    def _require_infra(self) -> Infra:
        if self.infra is None:
            raise RuntimeError("call start_infra first")
        return self.infra

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _describe_group(client: Mapping[str, Any], group_id: str) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(**client, request_timeout_ms=5000)
    await admin.start()
    try:
        group = (await admin.describe_consumer_groups([group_id]))[0].groups[0]
        _error, _group_id, state, _protocol_type, _protocol, members = group[:6]
        return state, len(members)
    finally:
        await admin.close()
