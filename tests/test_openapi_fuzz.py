"""Schemathesis against the running gateway, from the committed OpenAPI document (the portals' contract).

Every operation is called with data that fits its schema (positive) and data that does not (negative),
authenticated with a key of a role the operation allows (admin where it may, else portal or
system_agent). Checks: never a 5xx; every refusal is `application/problem+json` with `type`, `title`
and `status`; answers match the document; schema-invalid data is refused. In the negative run every
refused call is also checked to have written nothing: a fingerprint of the stores (row counts of the
event stores and of the tables the services write from HTTP) is taken when the system is idle and must
be the same right after the refusal. Generation is derandomized (a fixed seed), so CI runs the same
examples every time and a failure reproduces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from mfaplane_chassis.problems import MEDIA_TYPE
from test_roles import ENDPOINTS

pytestmark = pytest.mark.slow

# The refusals schema-invalid data may get; 413: a body over the gateway's size limit (never a 5xx).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
SCHEMA = schemathesis.openapi.from_path(
    Path(__file__).parents[1] / "services/gateway/openapi.json",
    config=SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}),
)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
EXAMPLES = 15
IDLE_SECONDS = 1.5  # no change for this long: earlier work has been consumed
ROLE_PREFERENCE = ("admin", "portal", "system_agent", "auditor")
SERVICE_SCHEMAS = ("identity", "mfa", "scheduler", "notifier", "gateway")
# Besides every event store: what the services write straight from an HTTP request.
WRITTEN_FROM_HTTP = ("identity.credentials", "identity.api_keys", "mfa.totp_secrets", "gateway.bulk_operations",
                     "gateway.bulk_operation_items")
FINGERPRINT = "SELECT " + ", ".join(
    [f"(SELECT count(*) FROM {s}.events) AS {s}_events" for s in SERVICE_SCHEMAS]
    + [f"(SELECT count(*) FROM {s}.commands) AS {s}_commands" for s in SERVICE_SCHEMAS]
    + [f"(SELECT count(*) FROM {t}) AS {t.replace('.', '_')}" for t in WRITTEN_FROM_HTTP]
    + ["(SELECT count(*) FROM identity.api_keys WHERE revoked) AS revoked_api_keys"]
)
# Sessions by id, and whether revoked: the gateway deletes expired ones in the background, so one may
# vanish at any time, but a refused call must neither open one nor revoke one.
SESSIONS = "SELECT session_id, revoked_at IS NOT NULL AS revoked FROM gateway.sessions"


def caller_role(method: str, path: str) -> str:
    allowed = next(roles for m, p, roles in ENDPOINTS if (m, p) == (method.upper(), path))
    return next(role for role in ROLE_PREFERENCE if role in allowed)


class Stores:
    """A fingerprint of what the services stored, and the last one seen while the system was idle."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self.baseline = self.idle()

    def now(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            conn = await asyncpg.connect(self._database_url)
            try:
                sessions = {row["session_id"]: row["revoked"] for row in await conn.fetch(SESSIONS)}
                return {**await conn.fetchrow(FINGERPRINT), "sessions": sessions}
            finally:
                await conn.close()

        return asyncio.run(read())

    def idle(self) -> dict[str, Any]:
        """The fingerprint once it stopped changing (consumers and timers done with earlier work)."""
        deadline = time.monotonic() + 60
        previous = self.now()
        while True:
            time.sleep(IDLE_SECONDS)
            current = self.now()
            if current == previous:
                return current
            assert time.monotonic() < deadline, "the stores never stopped changing"
            previous = current

    def unchanged_by(self, response) -> None:
        """A refused call wrote nothing; an accepted one may, so wait for its effects and start again."""
        if response.status_code < 400:
            self.baseline = self.idle()
            return
        before, self.baseline = self.baseline, self.now()
        changed = {name: (count, self.baseline[name]) for name, count in before.items()
                   if name != "sessions" and self.baseline[name] != count}
        opened_or_revoked = [session for session, revoked in self.baseline["sessions"].items()
                             if before["sessions"].get(session) is not revoked]
        assert not changed, f"refused with {response.status_code} but wrote (before, after): {changed}"
        assert not opened_or_revoked, f"refused with {response.status_code} but opened or revoked a session"


@pytest.fixture(scope="module")
def stores(stack) -> Stores:
    return Stores(stack.infra.database_url)


def assert_problem(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith(MEDIA_TYPE), f"{response.status_code} as {content_type}: {response.text[:500]}"
        body = response.json()
        assert {"type", "title", "status"} <= body.keys(), body
        assert body["status"] == response.status_code, body


def fuzz(operation, mode: GenerationMode, api_keys: dict[str, str], base_url: str,
         after_call: Callable[[object], None]) -> None:
    auth = {"Authorization": f"Bearer {api_keys[caller_role(operation.method, operation.path)]}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode.is_negative:
        checks.append(negative_data_rejection)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(mode, headers=auth))
    def call(case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        assert_problem(response)
        case.validate_response(response, checks=checks)
        after_call(response)

    call()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[o.label for o in OPERATIONS])
def test_data_that_breaks_the_schema_is_refused_and_writes_nothing(stack, api_keys, stores, operation) -> None:
    fuzz(operation, GenerationMode.NEGATIVE, api_keys, stack.url("gateway"), stores.unchanged_by)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[o.label for o in OPERATIONS])
def test_data_that_fits_the_schema_never_breaks_the_gateway(stack, api_keys, operation) -> None:
    fuzz(operation, GenerationMode.POSITIVE, api_keys, stack.url("gateway"), lambda response: None)
