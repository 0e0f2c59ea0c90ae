"""The operator's way out of a held partition (docs/operations.md, "Events held"): `park-held`, run as
the runbook says, against a running service's schema."""

from __future__ import annotations

import subprocess
import sys
import uuid

from fault_tools import schema
from mfaplane_contracts.topics import SCHEDULER_EVENTS

PARTITION = 7_000_001  # beyond the topic's partitions: the running notifier never holds one of these


def park_held(stack, service: str, partition: int) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", f"mfaplane_{service}", "park-held", "--topic", SCHEDULER_EVENTS.name,
            "--partition", str(partition)]
    return subprocess.run(argv, env=stack.service_env(service), capture_output=True, text=True, timeout=120)


async def test_park_held_moves_the_oldest_held_message_to_the_dead_letters_and_says_so(stack) -> None:
    never, behind = uuid.uuid4(), uuid.uuid4()
    async with schema(stack, "notifier") as notifier:
        await notifier.executemany(
            'INSERT INTO held_events (topic, partition, "offset", event_id, value, reason) VALUES ($1, $2, $3, $4, '
            "$5, $6)", [(SCHEDULER_EVENTS.name, PARTITION, 1, never, b"{}", "newer: EnrollmentExpired v9"),
                        (SCHEDULER_EVENTS.name, PARTITION, 2, behind, b"{}", "behind a held message")])
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
