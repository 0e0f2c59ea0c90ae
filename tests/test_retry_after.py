"""Every 429 and 503 the gateway answers says when to come back in `Retry-After`, as HTTP clients
look for it, and agrees with the body's `retry_after` where the body has one.

Each kind is made to happen on the running stack: identity's per-email limit (forwarded by the
gateway), the gateway's own rate limit, a read waiting for a change the projection has not reached
or for a bulk operation still running, and identity and mfa out of reach. mfa's throttle is checked
in test_sign_in.py (test_wrong_codes_are_throttled), identity's `server_busy` and `source_throttled` the same way in
test_sign_in_limits.py (they need an identity with tight limits), a database away in
test_infra_faults.py (SteadyLoad counts a 503 without the header as unexpected), and /readyz in
libs/chassis/tests/test_response_headers.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from fault_tools import schema
from mfaplane_devstack.supervisor import free_port
from mfaplane_identity.settings import IdentitySettings
from portal_flows import PASSWORD, new_user, ok, problem


def retry_after(response: httpx.Response, status: int, code: str) -> int:
    """The refusal's Retry-After, in whole seconds, checked against the body."""
    body = problem(response, status, code)
    seconds = int(response.headers["Retry-After"])
    assert seconds > 0 and body.get("retry_after", seconds) == seconds, (response.headers, body)
    return seconds


async def test_identity_limiting_password_guesses_is_a_429_with_retry_after(admin, portal) -> None:
    _, email = await new_user(admin)
    for _ in range(IdentitySettings.model_fields["password_max_failures"].default):
        problem(await portal.post("/v1/portal/sign-in", json={"email": email, "password": "a guess"}),
                401, "invalid_credentials")
    refused = await portal.post("/v1/portal/sign-in", json={"email": email, "password": "a guess"})
    retry_after(refused, 429, "too_many_attempts")


async def test_a_read_waiting_for_a_change_not_yet_projected_is_a_503_with_retry_after(admin) -> None:
    user_id, _ = await new_user(admin)
    ahead = await admin.get("/v1/users", params={"consistent_with": f"{user_id}@1000"})
    assert retry_after(ahead, 503, "projection_behind") == 1


async def test_a_read_waiting_for_a_bulk_operation_still_running_is_a_503_with_retry_after(stack, admin) -> None:
    created = ok(await admin.post("/v1/users", json={"email": f"run-{uuid.uuid4().hex[:8]}@example.com",
                                                     "name": "Running", "password": PASSWORD}))
    ok(await admin.get(f"/v1/users/{created['id']}", params={"consistent_with": created["consistency_token"]}))
    async with schema(stack, "mfa") as mfa, mfa.transaction():
        await mfa.execute("LOCK TABLE events IN SHARE MODE")  # mfa appends nothing until the transaction ends
        operation = ok(await admin.post("/v1/users/mfa/bulk", json={"action": "require", "user_ids": [created["id"]]}))
        running = await admin.get("/v1/users", params={"consistent_with": operation["consistency_token"]})
        assert retry_after(running, 503, "operation_running") >= 1
        assert operation["id"] in running.json()["detail"]
    read_back = ok(await admin.get(f"/v1/users/{created['id']}",
                                   params={"consistent_with": operation["consistency_token"]}))
    assert read_back["status"] == "enrolling"


@pytest.fixture(scope="module")
def cut_off(stack) -> Iterator[str]:
    """A gateway whose identity and mfa cannot be reached, with one sign-in a minute per source."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    stack.start_replica("gateway", "gateway-cut-off", {
        "IDENTITY_URL": nowhere, "MFA_URL": nowhere, "SIGN_IN_PER_MINUTE_PER_SOURCE": "1"})
    stack.wait_for_group("gateway", members=2)
    try:
        yield stack.url("gateway-cut-off")
    finally:
        stack.take_down("gateway-cut-off")
        stack.wait_for_group("gateway", members=1)


async def test_services_out_of_reach_and_the_gateways_own_rate_limit_answer_with_retry_after(
        cut_off, api_keys) -> None:
    async with httpx.AsyncClient(base_url=cut_off, timeout=30,
                                 headers={"Authorization": f"Bearer {api_keys['portal']}"}) as portal:
        credentials = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "a guess"}
        retry_after(await portal.post("/v1/portal/sign-in", json=credentials), 503, "service_unavailable")
        retry_after(await portal.post("/v1/portal/sign-in", json=credentials), 429, "rate_limited")
