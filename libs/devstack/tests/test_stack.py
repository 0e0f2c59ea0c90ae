from __future__ import annotations

import asyncio
import ssl
import textwrap
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mfaplane_contracts.topics import MFA_EVENTS
from mfaplane_devstack import SERVICES, Infra, Stack, ensure_pki, ensure_topics, http_ok
from mfaplane_devstack.stack import KAFKA_CLIENTS

from .conftest import alive

FAKE_SERVICE = '''
    """A stand-in service: `migrate` records its schema, `serve` answers /readyz on HTTP_HOST:HTTP_PORT."""
    import http.server, json, os, pathlib, sys

    out = pathlib.Path(os.environ["FAKE_OUT"])
    if sys.argv[1] == "migrate":
        (out / ("migrated-" + os.environ["DATABASE_SCHEMA"])).write_text(json.dumps(dict(os.environ)))
        sys.exit(0)

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

    http.server.HTTPServer((os.environ["HTTP_HOST"], int(os.environ["HTTP_PORT"])), Ready).serve_forever()
'''


def test_infra_starts_embedded_servers(tmp_path: Path) -> None:
    with Stack(tmp_path, environ={}, durable=False) as stack:
        infra = stack.start_infra()

        assert infra.database_url.startswith("postgresql://postgres@127.0.0.1:")
        assert infra.kafka_bootstrap.startswith("127.0.0.1:")
        assert infra.maildir == tmp_path / "mail"
        assert sorted(stack.supervisor.names()) == ["kafka", "kafka-tls", "postgres", "smtp"]
    assert not any(stack.supervisor.is_running(name) for name in ("kafka", "kafka-tls", "postgres", "smtp"))


async def test_infra_is_usable_from_a_running_event_loop(tmp_path: Path) -> None:
    with Stack(tmp_path, environ={}, durable=False) as stack:
        infra = stack.start_infra()
        connection = await asyncpg.connect(infra.database_url)
        assert await connection.fetchval("select 1") == 1
        await connection.close()


async def test_restarted_infra_keeps_its_address_and_the_database_its_data_but_the_broker_loses_its_log(
    tmp_path: Path,
) -> None:
    """What the infrastructure fault tests (tests/test_infra_faults.py) rely on."""
    with Stack(tmp_path, environ={}, durable=False) as stack:
        infra = stack.start_infra()
        connection = await asyncpg.connect(infra.database_url)
        await connection.execute("CREATE TABLE kept AS SELECT 1 AS x")
        await connection.close()
        partition = TopicPartition(MFA_EVENTS.name, 0)
        producer = AIOKafkaProducer(**stack.kafka_client_options())
        await producer.start()
        await producer.send_and_wait(partition.topic, b"lost", partition=0)
        await producer.stop()

        await asyncio.to_thread(stack.restart, "postgres")
        await asyncio.to_thread(stack.restart, "kafka")

        connection = await asyncpg.connect(infra.database_url)
        assert await connection.fetchval("SELECT x FROM kept") == 1
        await connection.close()
        assert await ensure_topics(stack.kafka_client_options()) == []  # the catalog's topics are back...
        consumer = AIOKafkaConsumer(**stack.kafka_client_options())
        await consumer.start()
        try:
            assert await consumer.end_offsets([partition]) == {partition: 0}  # ...empty
        finally:
            await consumer.stop()


def test_service_env_wires_each_service_to_the_others(tmp_path: Path) -> None:
    stack = _stack_with_fake_infra(tmp_path)
    stack.ports = {"identity": 7001, "mfa": 7002, "scheduler": 7003, "notifier": 7004, "gateway": 7005}
    stack.extra_env = {"MFA_ENCRYPTION_KEYS": "k1"}

    gateway = stack.service_env("gateway")
    notifier = stack.service_env("notifier", {"MFAPLANE_FAKE_CLOCK_FILE": "/tmp/clock"})

    assert gateway["IDENTITY_URL"] == "https://127.0.0.1:7001" and gateway["MFA_URL"] == "https://127.0.0.1:7002"
    assert gateway["SERVICES_CA_FILE"] == str(stack.https_ca) and "HTTP_TLS_CERT_FILE" not in gateway
    identity = stack.service_env("identity")
    assert (identity["HTTP_TLS_CERT_FILE"], identity["HTTP_TLS_KEY_FILE"]) == \
        (str(tmp_path / "pki" / "identity-api.crt"), str(tmp_path / "pki" / "identity-api.key"))
    assert (gateway["HTTP_HOST"], gateway["HTTP_PORT"], gateway["DATABASE_SCHEMA"]) == ("127.0.0.1", "7005", "gateway")
    assert notifier["USER_PORTAL_URL"] == "http://127.0.0.1:7005/portal"
    assert notifier["ADMIN_PORTAL_URL"] == "http://127.0.0.1:7005/admin"  # where the gateway serves the console
    assert notifier["SMTP_URL"] == "smtp://127.0.0.1:2525"
    assert notifier["MFAPLANE_FAKE_CLOCK_FILE"] == "/tmp/clock" and notifier["MFA_ENCRYPTION_KEYS"] == "k1"


def test_external_servers_replace_embedded_ones(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={"SMTP_URL": "smtp://mail.internal:1025"})
    assert stack._smtp() == ("mail.internal", 1025, None)


def test_each_service_reaches_the_embedded_broker_with_its_own_certificate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-our-environment")  # not for the embedded broker
    monkeypatch.setenv("KAFKA_SSL_CA_FILE_FILE", "/elsewhere")
    stack = _stack_with_fake_infra(tmp_path)
    stack.pki = ensure_pki(tmp_path / "pki", KAFKA_CLIENTS)
    stack.ports = {"identity": 7001, "mfa": 7002, "scheduler": 7003, "notifier": 7004, "gateway": 7005}

    envs = {service: stack.service_env(service) for service in SERVICES}

    for service, env in envs.items():
        assert {k: v for k, v in env.items() if k.startswith("KAFKA_")} == stack.kafka_env(service) == {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(tmp_path / "pki" / "ca.crt"),
            "KAFKA_SSL_CERT_FILE": str(tmp_path / "pki" / f"{service}.crt"),
            "KAFKA_SSL_KEY_FILE": str(tmp_path / "pki" / f"{service}.key"),
        }
    options = stack.kafka_client_options()
    assert (options["bootstrap_servers"], options["security_protocol"]) == ("127.0.0.1:9092", "SSL")
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED and options["ssl_context"].check_hostname
    assert stack.kafka_env("bench")["KAFKA_SSL_CERT_FILE"] == str(tmp_path / "pki" / "bench.crt")  # made on demand
    assert (tmp_path / "pki" / "bench.key").exists()


def test_an_external_broker_takes_its_security_settings_from_the_environ(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.internal:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "mfaplane",
               "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"), "UNRELATED": "x"}
    stack = Stack(tmp_path, environ=environ)
    stack.infra = Infra("postgresql://postgres@127.0.0.1:5432/postgres", "kafka.internal:9093", "127.0.0.1", 2525, None)
    stack.ports = {"identity": 7001}

    expected = {k: v for k, v in environ.items() if k.startswith("KAFKA_")}
    assert stack.kafka_env("identity") == stack.kafka_env("tests") == expected
    assert {k: v for k, v in stack.service_env("identity").items() if k.startswith("KAFKA_")} == expected
    options = stack.kafka_client_options()
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "bootstrap_servers": "kafka.internal:9093", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "mfaplane", "sasl_plain_password": "s3cret"}
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert not list((tmp_path / "pki").glob("tests.*")), "no Kafka client certificate of our own"


def test_services_are_migrated_started_restarted_and_stopped(tmp_path: Path) -> None:
    package = tmp_path / "fake" / "mfaplane_fakesvc"
    package.mkdir(parents=True)
    (package / "__main__.py").write_text(textwrap.dedent(FAKE_SERVICE))
    stack = _stack_with_fake_infra(tmp_path)
    extra = {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_OUT": str(tmp_path)}

    with stack:
        stack.start_services(extra, services=["fakesvc"])
        assert (tmp_path / "migrated-fakesvc").exists()
        assert http_ok(stack.url("fakesvc") + "/readyz")()

        first = stack.supervisor.pid("fakesvc")
        stack.kill("fakesvc")
        stack.restart("fakesvc")
        assert stack.supervisor.pid("fakesvc") != first
        assert http_ok(stack.url("fakesvc") + "/readyz")()
    assert not alive(stack.supervisor.pid("fakesvc"))


def test_the_reference_portal_key_is_made_once_per_data_folder(tmp_path: Path, monkeypatch) -> None:
    stack = Stack(tmp_path, environ={})
    made: list[tuple[str, str]] = []
    monkeypatch.setattr(stack, "create_api_key", lambda role, name: made.append((role, name)) or "mfp_made_once")

    assert stack.reference_portal_key() == "mfp_made_once"
    assert Stack(tmp_path, environ={}).reference_portal_key() == "mfp_made_once"  # `make run` again
    assert made == [("portal", "reference portals")]
    assert (tmp_path / "reference-portal-key").stat().st_mode & 0o077 == 0


def _stack_with_fake_infra(tmp_path: Path) -> Stack:
    stack = Stack(tmp_path, environ={})
    stack.infra = Infra("postgresql://postgres@127.0.0.1:5432/postgres", "127.0.0.1:9092", "127.0.0.1", 2525, None)
    return stack


