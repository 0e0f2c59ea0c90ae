"""The README's quick start, run as written against the running stack: what a new developer pastes works,
and the list right after the require shows the user it required (it reads its own write)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_script() -> str:
    section = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return next(block for block in re.findall(r"```sh\n(.*?)```", section, re.S) if "$GW" in block)


async def test_the_quick_start_lists_the_user_it_just_required(stack, api_keys) -> None:
    """As written, but for an email of its own: the suite's stack is shared, and an email is taken once."""
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    script = quick_start_script()
    assert "ada@example.com" in script
    env = {**os.environ, "GW": stack.url("gateway"), "KEY": api_keys["admin"],
           "MFAPLANE_DATA_DIR": str(stack.data_dir)}  # the mail command reads this stack's catcher
    done = await asyncio.to_thread(subprocess.run, ["bash", "-euo", "pipefail", "-c",
                                                    script.replace("ada@example.com", email)],
                                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f'"email": "{email}"' in done.stdout and '"status": "enrolling"' in done.stdout, done.stdout
