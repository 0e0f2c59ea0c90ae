"""The code checks `make test` runs: ruff's lint rules and mypy's types, configured in pyproject.toml
(strict for contracts/ and libs/, mypy's default checks for the services and the agent)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mypy_cache() -> Path:
    """A cache per mypy configuration (under .mypy_cache, which git ignores): mypy does not re-check a
    module when an override of a module it imports changes (python/mypy#7777), so a cache made under
    another configuration could report errors that are gone, or miss new ones."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    return ROOT / ".mypy_cache" / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


CHECKS = {
    "ruff": ["ruff", "check", "--output-format=concise", "."],
    "mypy": ["mypy", "--cache-dir", str(mypy_cache())],  # the files to check are the configuration's
}


@pytest.mark.parametrize("tool", list(CHECKS))
def test_the_code_passes(tool: str) -> None:
    done = subprocess.run([sys.executable, "-m", *CHECKS[tool]], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{tool} found problems:\n{done.stdout}{done.stderr}"
