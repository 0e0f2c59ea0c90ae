"""Counters for node_exporter's textfile collector (`--collector.textfile.directory=<state_dir>`).

Every sshd process that runs the agent updates the same file: under an exclusive lock on a side file,
it reads the counts, adds its own and replaces the file in one rename, so a scrape never sees half.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

FILE_NAME = "mfaplane_agent.prom"
DECISIONS = "mfaplane_agent_decisions_total"
UNREACHABLE = "mfaplane_agent_gateway_unreachable_total"
_HELP = {
    DECISIONS: "SSH logins decided by the mfaplane agent, by outcome and reason.",
    UNREACHABLE: "Logins for which the gateway could not be reached and the failure policy applied.",
}
_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\d+)$")


def record(state_dir: str, outcome: str, reason: str, unreachable: bool) -> None:
    """Adds one decision (labels come from the agent's own bounded vocabulary)."""
    additions = {f'{DECISIONS}{{outcome="{outcome}",reason="{reason}"}}': 1}
    if unreachable:
        additions[UNREACHABLE] = 1
    path = Path(state_dir) / FILE_NAME
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counts = read(path)
        for sample, amount in additions.items():
            counts[sample] = counts.get(sample, 0) + amount
        _replace(path, _render(counts))


def read(path: Path) -> dict[str, int]:
    """Sample (metric name with its labels) -> count; an absent file has none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    counts = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            counts[match[1] + (match[2] or "")] = int(match[3])
    return counts


def _render(counts: dict[str, int]) -> str:
    lines = []
    for metric, help_text in _HELP.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f"{sample} {count}" for sample, count in sorted(counts.items()) if sample.split("{")[0] == metric]
    return "\n".join(lines) + "\n"


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
