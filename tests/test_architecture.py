"""The tree keeps the architecture: a service depends on contracts, eventing and the chassis, never on another
service; the event-sourcing core (eventing) knows nothing of the HTTP chassis."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
SHARED = {"mfaplane-contracts", "mfaplane-eventing", "mfaplane-chassis"}


def test_the_five_services_exist() -> None:
    assert SERVICES == ["gateway", "identity", "mfa", "notifier", "scheduler"]


def test_services_depend_only_on_shared_packages() -> None:
    for service in SERVICES:
        project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
        ours = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"] if d.startswith("mfaplane")}
        assert ours <= SHARED, f"{service} depends on {ours - SHARED}"


def test_services_import_no_other_service_and_not_faust() -> None:
    for service in SERVICES:
        others = [s for s in SERVICES if s != service]
        for source in (ROOT / "services" / service / "src").rglob("*.py"):
            text = source.read_text()
            for other in others:
                assert f"mfaplane_{other}" not in text, f"{source} imports the {other} service"
            assert not re.search(r"^\s*(import|from)\s+faust", text, re.M), f"{source} uses faust directly"


def test_the_ssh_agent_runs_on_the_standard_library_alone() -> None:
    """It runs inside sshd, in the host's own Python (pam_python.so): nothing of the services, nothing from PyPI."""
    agent = ROOT / "agents" / "pam"
    assert tomllib.loads((agent / "pyproject.toml").read_text())["project"]["dependencies"] == []
    for source in (agent / "src").rglob("*.py"):
        imported = re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", source.read_text(), re.M)
        outside = {name for name in imported if name not in sys.stdlib_module_names | {"mfaplane_agent", "__future__"}}
        assert not outside, f"{source} imports {outside}"


def test_the_event_sourcing_core_knows_nothing_of_the_http_chassis() -> None:
    core = ROOT / "libs" / "eventing"
    assert "mfaplane-chassis" not in (core / "pyproject.toml").read_text()
    for source in (core / "src").rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+(mfaplane_chassis|fastapi|starlette|uvicorn)", text, re.M), \
            f"{source} reaches into the HTTP side"
