"""`python -m bench [options] [scenario [scenario options]]`: run benchmarks, print one table.

    python -m bench                      # every scenario at full size
    python -m bench --quick              # every scenario at small sizes (a smoke run)
    python -m bench bulk --users 2000    # one scenario, with its own sizes
    python -m bench lists --help         # a scenario's options

Results are written to bench/results/<UTC time>.json; the table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from pathlib import Path

import psutil

from bench import append, bulk, expiry, memory, replay, sign_in, status_lists
from bench.harness import BenchStack
from bench.runner import Measure, Row, git_commit, log, machine, table, write_results

SCENARIOS = {
    "append": append,  # 2 (database only)
    "replay": replay,  # 3 (database only)
    "lists": status_lists,  # 5 (database only)
    "memory": memory,  # 7, which runs 1 (bulk) between its two readings
    "bulk": bulk,  # 1
    "signin": sign_in,  # 4
    "expiry": expiry,  # 6, last: it moves the services' clock a day on
}
# `all` runs these; bulk is inside memory.
ALL = ("append", "replay", "lists", "memory", "signin", "expiry")
QUICK = {
    "append": ["--seconds", "2"],
    "replay": ["--events", "20000"],
    "lists": ["--sizes", "10000", "50000", "--repeats", "30", "--max-seconds", "2"],
    "memory": ["--users", "300"],
    "bulk": ["--users", "300"],
    "signin": ["--users", "150", "--seconds", "3", "--default-argon2-users", "8", "--earlier-sign-ins", "40"],
    "expiry": ["--users", "200"],
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--quick", action="store_true", help="small sizes everywhere: a smoke run")
    top.add_argument("--data-dir", type=Path, help="keep the stack's data here (default: a temporary folder, removed)")
    top.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (default INFO, as shipped)")
    subs = top.add_subparsers(dest="scenario")
    subs.add_parser("all", help="every scenario (the default)")
    for name, module in SCENARIOS.items():
        sub = subs.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(sub)
    return top


def scenario_args(top: argparse.ArgumentParser, name: str, quick: bool) -> argparse.Namespace:
    sub = top._subparsers._group_actions[0].choices[name]  # noqa: SLF001 - argparse keeps them only here
    return sub.parse_args(QUICK[name] if quick else [])


def busy_neighbours() -> list[str]:
    """Other mfaplane services or test runs on this machine: they share the CPUs with the bench."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        service = "mfaplane_" in command and " serve" in command
        if process.info["pid"] not in mine and (service or "pytest" in command):
            found.append(f"{process.info['pid']} {command[:100]}")
    return found


async def run(names: list[str], given: argparse.Namespace | None, top: argparse.ArgumentParser,
              options: argparse.Namespace) -> tuple[list[Row], list[str]]:
    bench = BenchStack(options.data_dir, log_level=options.log_level)
    rows: list[Row] = []
    failures: list[str] = []
    try:
        bench.infra()
        for name in names:
            args = given if given is not None else scenario_args(top, name, options.quick)
            log(f"scenario {name}: {vars(args)}")
            started = time.monotonic()
            try:
                rows += await SCENARIOS[name].run(bench, args)
            except Exception as error:  # noqa: BLE001 - the other scenarios still run; reported below
                traceback.print_exc()
                failures.append(f"{name}: {error!r}")
                rows.append(Row(name, "FAILED", Measure(0, "", detail=repr(error)[:120])))
            log(f"scenario {name} took {time.monotonic() - started:.0f} s")
    finally:
        bench.stop()
    return rows, failures


def cpu_calibration() -> float:
    """pyotp verifications per second on one thread of this process: the speed of the machine's CPU as
    it is now. The host is shared and its speed varies between runs (docs/performance.md), so a
    run's figures are compared with another's through this, or through the ratios to the raw limits."""
    rate = sign_in.pyotp_rate(2.0)
    log(f"CPU calibration: pyotp alone {rate:,.0f} verifications/s")
    return round(rate)


def main() -> None:
    top = parser()
    options = top.parse_args()
    name = options.scenario or "all"
    names = list(ALL) if name == "all" else [name]
    given = None if name == "all" else options
    if given is not None and options.quick:
        given = scenario_args(top, name, True)
    neighbours = busy_neighbours()
    if neighbours:
        log(f"warning: {len(neighbours)} other mfaplane service or pytest processes are running; "
            "figures will be lower than on an idle machine")
    meta = {"machine": machine(), "commit": git_commit(), "scenarios": names, "quick": options.quick,
            "argv": sys.argv[1:], "busy_neighbours_at_start": neighbours,
            "external_servers": {k: bool(os.environ.get(k))
                                 for k in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL")}}
    meta["cpu_calibration_at_start"] = cpu_calibration()
    started = time.monotonic()
    rows, failures = asyncio.run(run(names, given, top, options))
    meta["seconds"] = round(time.monotonic() - started)
    meta["load_average_at_end"] = os.getloadavg()
    meta["cpu_calibration_at_end"] = cpu_calibration()
    path = write_results(rows, meta)
    print(table(rows))
    log(f"results: {path}")
    if failures:
        log("failed: " + "; ".join(failures))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
