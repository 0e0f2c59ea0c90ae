"""What every scenario shares: result rows, the one table, JSON results, the machine, statistics, load.

A scenario returns `Row`s. A row holds the system's figure and the raw limit measured in the same
run, both as a value with a direction: throughput (higher is better) or a time (lower is better).
The ratio is always "the share of the raw limit the system reaches": figure / raw for throughput,
raw / figure for a time, so 100% means the system is as fast as the bare building block.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).parent / "results"
Better = Literal["higher", "lower"]


@dataclass
class Measure:
    value: float
    unit: str  # "users/s", "ms", "s", "MiB"...
    better: Better = "higher"
    label: str = ""  # what was measured, e.g. "asyncpg COPY + aiokafka produce"
    detail: str = ""  # shown after the value, e.g. "p50 3.1 ms, p99 9.8 ms"

    def text(self) -> str:
        shown = f"{fmt(self.value)} {self.unit}"
        return f"{shown} ({self.detail})" if self.detail else shown


@dataclass
class Row:
    scenario: str
    case: str
    figure: Measure
    raw: Measure | None = None
    target: str = ""  # e.g. ">= 3,000 users/s"
    met: bool | None = None  # None: no target for this row
    notes: dict[str, Any] = field(default_factory=dict)  # everything else worth keeping, in the JSON

    @property
    def ratio(self) -> float | None:
        if self.raw is None or not self.raw.value or not self.figure.value:
            return None
        if self.figure.better == "higher":
            return self.figure.value / self.raw.value
        return self.raw.value / self.figure.value


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.2f}"


def percent(ratio: float) -> str:
    """Rounded down (a ratio shown as 70% has reached 70%), with a decimal below 10%."""
    if ratio < 0.1:
        return f"{math.floor(ratio * 1000) / 10:.1f}%"
    return f"{math.floor(ratio * 100)}%"


def table(rows: Sequence[Row]) -> str:
    """The results as one Markdown table (it reads fine in a terminal too)."""
    header = ["scenario", "case", "figure", "raw limit (same run)", "ratio", "target", "met"]
    lines = [header]
    for row in sorted(rows, key=lambda r: r.scenario.split(" ")[0].zfill(3)):  # by scenario number
        raw = f"{row.raw.text()}: {row.raw.label}" if row.raw else "-"
        ratio = percent(row.ratio) if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        lines.append([row.scenario, row.case, row.figure.text(), raw, ratio, row.target or "-", met])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


# -- the machine and the results file -------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).parent).stdout.strip()
        return done.stdout.strip() + ("+dirty" if dirty else "") if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def rows_from_json(path: Path) -> list[Row]:
    """The rows of a results file, e.g. to print its table again: python -m bench.runner <file>."""
    document = json.loads(Path(path).read_text())
    rows = []
    for row in document["rows"]:
        row.pop("ratio", None)
        figure, raw = Measure(**row.pop("figure")), row.pop("raw")
        rows.append(Row(figure=figure, raw=Measure(**raw) if raw else None, **row))
    return rows


def write_results(rows: Sequence[Row], meta: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}.json"
    document = {
        **meta,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
        "table": table(rows),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# -- statistics and timing --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: p99 of 100 values is the 99th smallest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_detail(latencies_s: Sequence[float]) -> str:
    return f"p50 {fmt(percentile(latencies_s, 50) * 1000)} ms, p99 {fmt(percentile(latencies_s, 99) * 1000)} ms"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1) -> float:
    """Polls `check` until it is true; returns the monotonic time it first was. Raises after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f} s")
        await asyncio.sleep(interval)


@dataclass
class LoadResult:
    completed: int
    failed: int
    seconds: float
    latencies: list[float]  # of the completed requests, in seconds
    errors: dict[str, int]

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def measure(self, unit: str, label: str = "") -> Measure:
        detail = latency_detail(self.latencies)
        if self.failed:
            detail += f", {self.failed} failed"
        return Measure(self.rate, unit, "higher", label, detail)

    def notes(self) -> dict[str, Any]:
        return {"completed": self.completed, "failed": self.failed, "seconds": round(self.seconds, 3),
                "p50_ms": percentile(self.latencies, 50) * 1000, "p90_ms": percentile(self.latencies, 90) * 1000,
                "p99_ms": percentile(self.latencies, 99) * 1000, "max_ms": max(self.latencies, default=0) * 1000,
                "errors": self.errors}


async def closed_loop(operation: Callable[[int], Awaitable[Any]], *, concurrency: int, requests: int | None = None,
                      seconds: float | None = None) -> LoadResult:
    """`concurrency` clients each call `operation(i)` again as soon as the previous call returned.

    Stops after `requests` calls in all, or after `seconds`. `operation` raises on failure; a
    `StopIteration`-like `Exhausted` from it ends that client early (nothing left to send).
    """
    if (requests is None) == (seconds is None):
        raise ValueError("give requests or seconds")
    counter = iter(range(requests if requests is not None else 1 << 62))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    stop_at = start + seconds if seconds is not None else math.inf

    async def client() -> None:
        for i in counter:
            if time.perf_counter() >= stop_at:
                return
            began = time.perf_counter()
            try:
                await operation(i)
            except Exhausted:
                return
            except Exception as error:  # noqa: BLE001 - counted and reported, the load goes on
                key = f"{type(error).__name__}: {str(error)[:120]}"
                errors[key] = errors.get(key, 0) + 1
            else:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return LoadResult(len(latencies), sum(errors.values()), elapsed, latencies, errors)


class Exhausted(Exception):
    """Raised by a load operation when it has nothing left to send."""


if __name__ == "__main__":
    print(table(rows_from_json(Path(sys.argv[1]))))
