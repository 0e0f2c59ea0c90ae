"""The tree keeps the architecture: a service depends on contracts and eventing, never on another service."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
SHARED = {"mfaplane-contracts", "mfaplane-eventing"}


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
