"""Scenario 1, bulk require: MFA required for N users in one bulk action, until all N are listed `enrolling`.

Before (not timed): N users are created through the API and the run waits until the gateway lists
them. Timed: from sending `POST /v1/users/mfa/bulk` with the N ids until
`/v1/users/status-counts?q=<the run's tag>` counts N `enrolling`. That is the whole path a user
sees: the gateway's bulk worker sends the users to the mfa service in batches of commands (a few
hundred each), which appends MFARequired for each; its outbox relay publishes to Kafka; the
gateway's projector writes the audit log and the read model. CPU seconds of every process of the
stack during the timed phase are recorded per user (`cpu_ms_per_user` in the JSON).

Raw limit: storing and publishing N events with the bare clients (bench.raw.store_and_publish).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import raw
from bench.harness import BenchStack, cpu_ms_per_operation, stack_cpu_seconds
from bench.runner import Measure, Row, log
from bench.users import create_users, new_tag, status_counts

TARGET_PER_SECOND = 3000
POLL_SECONDS = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10_000, help="users in the bulk action (default 10,000)")
    parser.add_argument("--enrollment-days", type=int, default=7)


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    n = args.users
    admin = bench.api("admin")
    try:
        users = await create_users(admin, new_tag("bulk"), n)
        await bench.quiesce()
        cpu_before = stack_cpu_seconds()
        timing = await require_all(admin, users.tag, [str(i) for i in users.ids], args.enrollment_days)
        cpu_after = stack_cpu_seconds()
    finally:
        await admin.close()
    cpu_ms_per_user = cpu_ms_per_operation(cpu_before, cpu_after, n)
    log(f"bulk: {n} users enrolling after {timing['listed']:.2f} s "
        f"(request {timing['accepted']:.2f} s, commands applied {timing['applied']:.2f} s); "
        f"CPU per user {sum(cpu_ms_per_user.values()):.2f} ms: {cpu_ms_per_user}")
    limit = await raw.store_and_publish(bench, n)
    rate = n / timing["listed"]
    return [Row(
        "1 bulk require", f"{n:,} users, one request",
        Measure(rate, "users/s", detail=f"all listed after {timing['listed']:.1f} s"),
        Measure(limit.rate, "events/s", label="asyncpg COPY + aiokafka produce"),
        target=f">= {TARGET_PER_SECOND:,} users/s", met=rate >= TARGET_PER_SECOND,
        notes={"users": n, "seconds": timing, "user_creation_seconds": users.seconds,
               "raw_insert_seconds": limit.insert_seconds, "raw_produce_seconds": limit.produce_seconds,
               "cpu_ms_per_user": cpu_ms_per_user},
    )]


async def require_all(admin, tag: str, ids: list[str], enrollment_days: int) -> dict[str, float]:
    """Sends one bulk require; returns seconds until it was accepted, applied (operation completed), listed."""
    started = time.monotonic()
    operation = await admin.call("POST", "/v1/users/mfa/bulk",
                                 json={"action": "require", "enrollment_days": enrollment_days, "user_ids": ids})
    timing = {"accepted": time.monotonic() - started}
    deadline = started + max(600.0, len(ids) / 10)
    while time.monotonic() < deadline:
        # The status counts (a search over the run's users) only once every command is applied: they
        # cannot all be listed before, and counting them ten times a second loads the system measured.
        if "applied" not in timing:
            progress = await admin.call("GET", f"/v1/bulk-operations/{operation['id']}")
            if progress["state"] == "completed":
                timing["applied"] = time.monotonic() - started
                if progress["failed"]:
                    raise RuntimeError(f"bulk items failed: {progress['failed'][:5]}")
        if "applied" in timing and (await status_counts(admin, tag)).get("enrolling", 0) >= len(ids):
            timing["listed"] = time.monotonic() - started
            return timing
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"bulk require of {len(ids)} users not listed after {deadline - started:.0f} s")
