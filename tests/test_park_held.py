"""The operator's way out of a held partition (docs/operations.md, "Events held"): `park-held`, run as
the runbook says, against a running service's schema."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

from fault_tools import schema
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.topics import SCHEDULER_EVENTS
from mfaplane_eventing import event_signing
from trust_tools import service_key

PARTITION = 7_000_001  # beyond the topic's partitions: the running notifier never holds one of these


def too_new(stack, event_id: uuid.UUID) -> bytes:
    """A timer event of a version no release has, signed by its owner: the notifier's release loop
    keeps it held (anything else it would hand over or park itself before the command runs)."""
    envelope = Envelope(event_id=event_id, type="EnrollmentExpired", schema_version=9, aggregate_type="deadline_timer",
                        aggregate_id=f"deadline_timer:user_portal:{uuid.uuid4()}", aggregate_version=1,
                        occurred_at=datetime.now(UTC), correlation_id=uuid.uuid4(), actor="system:scheduler",
                        payload={})
    return event_signing.sign_batch([envelope.model_dump_json().encode()], service_key(stack, "scheduler"))[0]


def park_held(stack, service: str, partition: int) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", f"mfaplane_{service}", "park-held", "--topic", SCHEDULER_EVENTS.name,
            "--partition", str(partition)]
    return subprocess.run(argv, env=stack.service_env(service), capture_output=True, text=True, timeout=120)


async def test_park_held_moves_the_oldest_held_message_to_the_dead_letters_and_says_so(stack) -> None:
    never, behind = uuid.uuid4(), uuid.uuid4()
    async with schema(stack, "notifier") as notifier:
        await notifier.executemany(
            'INSERT INTO held_events (topic, partition, "offset", event_id, value, reason) VALUES ($1, $2, $3, $4, '
            "$5, $6)", [(SCHEDULER_EVENTS.name, PARTITION, 1, never, too_new(stack, never),
                         "newer: EnrollmentExpired v9"),
                        (SCHEDULER_EVENTS.name, PARTITION, 2, behind, too_new(stack, behind), "behind a held message")])
        done = park_held(stack, "notifier", PARTITION)
        assert done.returncode == 0, done.stderr
        assert f"parked event {never} (offset 1, newer: EnrollmentExpired v9)" in done.stdout
        held = [row["event_id"] for row in await notifier.fetch(
            "SELECT event_id FROM held_events WHERE partition = $1", PARTITION)]
        parked = await notifier.fetchrow("SELECT event_id, error FROM dead_letters WHERE partition = $1", PARTITION)
        await notifier.execute("DELETE FROM held_events WHERE partition = $1", PARTITION)
    assert held == [behind]
    assert parked["event_id"] == never and "parked by an operator" in parked["error"]

    nothing = park_held(stack, "notifier", PARTITION + 1)
    assert nothing.returncode != 0 and "nothing is held" in nothing.stderr
