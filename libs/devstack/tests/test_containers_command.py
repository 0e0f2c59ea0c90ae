"""`make test-containers` without a Docker engine says so and fails, rather than passing on nothing."""

from __future__ import annotations

import os
import subprocess
import sys


def test_without_a_docker_engine_it_explains_and_exits_non_zero(tmp_path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run([sys.executable, "-m", "mfaplane_devstack", "containers", "--", "-q"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "needs a Docker engine" in done.stderr
