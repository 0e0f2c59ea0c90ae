"""Scenario 7, memory: resident memory (RSS) of each service process, idle and after a bulk require.

Idle: once every service is ready, a few seconds after start. Then scenario 1 (bulk require of
--users users) runs, and RSS is read again right after it. RSS is the process's and any
children's, read with psutil from the pids the stack's supervisor holds.

Raw limit: the RSS of the bare FastAPI endpoint under uvicorn (bench.bare_app), idle: what one
Python process serving HTTP costs before any of the system's own code and clients.
"""

from __future__ import annotations

import argparse
import asyncio

import psutil

from bench import bulk
from bench.harness import BenchStack
from bench.runner import Measure, Row, log
from mfaplane_devstack import SERVICES

TARGET_IDLE_MIB = 150.0
IDLE_SETTLE_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bulk.add_arguments(parser)


def rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes) / 2**20


def snapshot(bench: BenchStack) -> dict[str, float]:
    supervisor = bench.services().supervisor
    return {service: rss_mib(supervisor.pid(service)) for service in SERVICES}


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    bench.services()
    await asyncio.sleep(IDLE_SETTLE_SECONDS)
    idle = snapshot(bench)
    _, bare_pid = bench.bare_app()
    await asyncio.sleep(1.0)
    bare = Measure(rss_mib(bare_pid), "MiB", "lower", "bare FastAPI + uvicorn process, idle")
    log("memory idle: " + ", ".join(f"{s} {v:.0f} MiB" for s, v in idle.items()) + f"; bare {bare.value:.0f} MiB")
    rows = await bulk.run(bench, args)
    after = snapshot(bench)
    log("memory after bulk: " + ", ".join(f"{s} {v:.0f} MiB" for s, v in after.items()))
    for service in SERVICES:
        rows.append(Row("7 memory: idle", service, Measure(idle[service], "MiB", "lower"), bare,
                        target=f"<= {TARGET_IDLE_MIB:.0f} MiB", met=idle[service] <= TARGET_IDLE_MIB))
    for service in SERVICES:
        rows.append(Row("7 memory: after bulk", f"{service}, after {args.users:,} users",
                        Measure(after[service], "MiB", "lower"), bare))
    return rows
