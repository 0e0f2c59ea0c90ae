"""Last of the suite: no TOTP key, recovery code, password, password hash or API key appears in any
Kafka message, any service log written during the run, or any aggregate snapshot (named to run
after the others)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from mfaplane_contracts.topics import ALL_TOPICS
from mfaplane_devstack.stack import SERVICES
from portal_flows import SHOWN_SECRETS, new_user, set_up, sign_in

FORBIDDEN_MARKERS = ("$argon2", "otpauth://")


async def _every_message(client: dict[str, Any]) -> list[bytes]:
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in ALL_TOPICS for p in range(t.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        async with asyncio.timeout(60):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                values += [m.value or b"" for messages in batches.values() for m in messages]
        return values
    finally:
        await consumer.stop()


async def test_no_secret_in_any_message_or_log(stack, admin, portal, clock, api_keys) -> None:
    _, email = await new_user(admin, enrollment_days=7)  # at least one setup, even when run alone
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    secrets = [s for s in SHOWN_SECRETS + list(api_keys.values()) + _infra_passwords(stack) if len(s) >= 8]
    assert len(secrets) >= 13, "the scan must have secrets to look for"

    messages = await _every_message(stack.kafka_client_options())
    logs = {path.name: path.read_bytes() for path in stack.supervisor.log_dir.glob("*.log")}
    snapshots = await _every_snapshot(stack.infra.database_url)
    assert messages and logs
    for source, text in [*(("kafka", m) for m in messages), *logs.items(), *snapshots]:
        for secret in [*secrets, *FORBIDDEN_MARKERS]:
            assert secret.encode() not in text, f"a secret appears in {source}"


def _infra_passwords(stack) -> list[str]:
    """The embedded PostgreSQL's password (its pgpass file) and the SMTP catcher's login."""
    pgpass = stack.data_dir / "postgres-config" / "pgpass"
    passwords = [line.rsplit(":", 1)[1] for line in pgpass.read_text().splitlines()] if pgpass.exists() else []
    return [*passwords, *filter(None, [stack.infra.smtp_credentials()[1]])]


async def _every_snapshot(database_url: str) -> list[tuple[str, bytes]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [(f"{schema}.snapshots", row["state"].encode()) for schema in SERVICES
                for row in await conn.fetch(f"SELECT state::text AS state FROM {schema}.snapshots")]
    finally:
        await conn.close()
