"""The committed OpenAPI document is the portals' contract: it must be what the code serves."""

from __future__ import annotations

import json
from pathlib import Path

from mfaplane_chassis.service import openapi_document
from mfaplane_gateway.__main__ import SPEC

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"


def test_committed_openapi_matches_the_code() -> None:
    assert COMMITTED.read_text() == openapi_document(SPEC), (
        "services/gateway/openapi.json drifted from the code: run `make openapi`"
    )


def test_every_operation_declares_problem_details_and_the_api_key() -> None:
    document = json.loads(openapi_document(SPEC))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = operation["responses"]["4XX"]["content"]
            assert "application/problem+json" in errors, f"{method} {path}"
            assert operation.get("security") == [{"HTTPBearer": []}], f"{method} {path} must require an API key"
