from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mfaplane_contracts.topics import MFA_EVENTS
from mfaplane_devstack import Infra, Stack, ensure_topics, http_ok

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
        assert sorted(stack.supervisor.names()) == ["kafka", "postgres", "smtp"]
    assert not any(stack.supervisor.is_running(name) for name in ("kafka", "postgres", "smtp"))


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
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(partition.topic, b"lost", partition=0)
        await producer.stop()

        await asyncio.to_thread(stack.restart, "postgres")
        await asyncio.to_thread(stack.restart, "kafka")

        connection = await asyncpg.connect(infra.database_url)
        assert await connection.fetchval("SELECT x FROM kept") == 1
        await connection.close()
        assert await ensure_topics(infra.kafka_bootstrap) == []  # the catalog's topics are back...
        consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap)
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

    assert gateway["IDENTITY_URL"] == "http://127.0.0.1:7001" and gateway["MFA_URL"] == "http://127.0.0.1:7002"
    assert (gateway["HTTP_HOST"], gateway["HTTP_PORT"], gateway["DATABASE_SCHEMA"]) == ("127.0.0.1", "7005", "gateway")
    assert notifier["USER_PORTAL_URL"] == "http://127.0.0.1:7005/portal"
    assert notifier["SMTP_URL"] == "smtp://127.0.0.1:2525"
    assert notifier["MFAPLANE_FAKE_CLOCK_FILE"] == "/tmp/clock" and notifier["MFA_ENCRYPTION_KEYS"] == "k1"


def test_external_servers_replace_embedded_ones(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={"SMTP_URL": "smtp://mail.internal:1025"})
    assert stack._smtp() == ("mail.internal", 1025, None)


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


