"""Hostile and odd input through the gateway, as property tests: each value is refused with
problem+json and writes nothing, or is accepted harmlessly (rule 1 and the API's error contract)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fault_tools import enrollment, schema
from portal_flows import PASSWORD, new_user, ok

pytestmark = pytest.mark.slow

FEW = settings(max_examples=30, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PROBLEM = "application/problem+json"
OPENAPI = Path(__file__).parents[1] / "services/gateway/openapi.json"

# Whole numbers of days only: 7.0, "7" and true are refused too.
BAD_DAYS = st.one_of(
    st.integers(max_value=0), st.integers(min_value=366), st.integers(min_value=2**63 - 5, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([7.0, "7", True, False]),
    st.text(max_size=20),
    st.lists(st.integers(1, 365), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
INJECTIONS = [
    "%", "_", "%%", "%_%", "\\", "\\%", "' OR '1'='1", "'; DROP TABLE principals_v1; --", "\" OR \"\"=\"",
    ".*", "^.*$", "[a-z]+", "(?i)a", "{\"$ne\": null}", "null", "[]", "a\r\nSet-Cookie: injected=1",
    "a\nX-Injected: 1", "\u202eexample", "\x00", "a\x00b", "*", "?", "$1", "e" * 200, "e" * 201,
]
LIST_PATHS = ("/v1/users", "/v1/users.csv", "/v1/users/status-counts", "/v1/systems")
# (path, parameter) of every list filter the committed API document declares, except the free-text search
LIST_FILTERS = sorted(
    (path, parameter["name"])
    for path in LIST_PATHS
    for parameter in json.loads(OPENAPI.read_text())["paths"][path]["get"]["parameters"]
    if parameter["name"] != "q" and parameter["in"] == "query"
)
ODD_EMAILS = [
    "user@bücher.example", "user@xn--bcher-kva.example", '"john doe"@example.com', '"a@b"@example.com',
    "user\u202e@example.com", "\u202euser@example.com", "us\x00er@example.com", "user@example.com\x00",
    "user@example.com\r\nBcc: victim@example.com", "a" * 64 + "@example.com", "a" * 65 + "@example.com",
    "x@" + ".".join(["a" * 63] * 4) + ".com", "user@localhost", "user@@example.com", "user@", "@example.com",
    "ÜSER@example.com", "user+tag@example.com", "user.name@sub.example.co.uk", "Ada@EXAMPLE.com",
    "user@[127.0.0.1]", "user@example..com", " user@example.com", "user@example.com ", "ユーザー@例え.jp",
]


def refused(response, *statuses: int) -> dict:
    sent = response.request.url, response.request.content[:200]
    assert response.status_code in statuses, f"{sent} -> {response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body = response.json()
    assert {"type", "title", "status", "code"} <= body.keys() and body["status"] == response.status_code, body
    return body


async def event_count(stack, service: str, aggregate_id: str | None = None) -> int:
    async with schema(stack, service) as conn:
        if aggregate_id is None:
            return await conn.fetchval("SELECT count(*) FROM events")
        return await conn.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1", aggregate_id)


def admin_client(stack, api_keys) -> httpx.AsyncClient:
    """For module fixtures (the `admin` fixture lives one test)."""
    return httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30,
                             headers={"Authorization": f"Bearer {api_keys['admin']}"})


@pytest.fixture(scope="module")
async def a_user(stack, api_keys) -> str:
    async with admin_client(stack, api_keys) as admin:
        return (await new_user(admin))[0]


@FEW
@given(days=BAD_DAYS)
@example(days=True)
@example(days=7.0)
@example(days="7")
async def test_out_of_range_enrollment_days_are_refused_and_write_nothing(stack, admin, a_user, days) -> None:
    for command in ("require", "extend", "reset"):
        before = await event_count(stack, "mfa", enrollment(a_user))
        response = await admin.post(f"/v1/users/{a_user}/mfa/{command}", json={"enrollment_days": days})
        refused(response, 422)
        assert await event_count(stack, "mfa", enrollment(a_user)) == before


@FEW
@given(text=st.text(min_size=260, max_size=5000) | st.just("a" * 100_000))  # over every limit, email's too
async def test_huge_strings_are_refused_and_write_nothing(stack, admin, text) -> None:
    before = await event_count(stack, "identity")
    for body in ({"email": f"{text}@example.com", "name": "n", "password": PASSWORD},
                 {"email": "huge@example.com", "name": text, "password": PASSWORD}):
        refused(await admin.post("/v1/users", json=body), 413, 422)
    refused(await admin.get("/v1/users", params={"q": text[:5000]}), 422)
    assert await event_count(stack, "identity") == before


async def created_or_refused(stack, admin, email: str, name: str, *refusals: int) -> dict | None:
    """The user as the API shows it once created, or None after checking the refusal (one of `refusals`)
    wrote nothing."""
    before = await event_count(stack, "identity")
    response = await admin.post("/v1/users", json={"email": email, "name": name, "password": PASSWORD})
    if response.status_code >= 300:
        refused(response, *refusals)
        assert await event_count(stack, "identity") == before
        return None
    receipt = response.json()
    return ok(await admin.get(f"/v1/users/{receipt['aggregate_id']}",
                              params={"consistent_with": receipt["consistency_token"]}))


@FEW
@given(email=st.sampled_from(ODD_EMAILS) | st.emails().map(lambda e: e[:1] + "\u200f" + e[1:]))
@example(email="user+tag@example.com")
@example(email="user@bücher.example")
@example(email="Ada@EXAMPLE.com")
@example(email="us\x00er@example.com")
async def test_an_odd_email_is_refused_or_comes_back_byte_identical(stack, admin, email) -> None:
    user = await created_or_refused(stack, admin, email, "Odd", 409, 422)  # 409: taken by an earlier example
    assert user is None or user["email"].encode() == email.encode(), (user, email)


@FEW
@given(name=st.text(min_size=1, max_size=200))  # NUL, controls, RTL marks, astral planes...
@example(name="nul\x00inside")
async def test_any_name_is_refused_or_comes_back_byte_identical(stack, admin, name) -> None:
    email = f"name-{uuid.uuid4().hex[:12]}@example.com"
    user = await created_or_refused(stack, admin, email, name, 400, 422)  # 400 invalid_text: control characters
    assert user is None or user["name"].encode() == name.encode(), (user, name)


@pytest.fixture(scope="module")
async def searchable(stack, api_keys) -> list[str]:
    """A few users, so a search that matches everything has something to show."""
    async with admin_client(stack, api_keys) as admin:
        return [(await new_user(admin))[1] for _ in range(3)]


@FEW
@given(text=st.sampled_from(INJECTIONS) | st.text(alphabet="%_\\'\"[]()*.^$|\r\n\x00 a", max_size=12))
@example(text="%")
@example(text="_")
@example(text="\x00")
async def test_injection_in_the_search_matches_only_literal_text(stack, admin, searchable, text) -> None:
    response = await admin.get("/v1/users", params={"q": text, "limit": 500})
    assert "injected" not in json.dumps(dict(response.headers)).lower()
    if response.status_code >= 300:
        refused(response, 400, 422)  # 400 invalid_text: control characters
        return
    page = response.json()
    folded = text.casefold()
    assert all(folded in user["email"].casefold() or folded in user["name"].casefold() for user in page["items"]), (
        text, [user["email"] for user in page["items"]][:5])


@FEW
@given(value=st.sampled_from(INJECTIONS), target=st.sampled_from(LIST_FILTERS))
async def test_injection_in_list_filters_is_refused(stack, admin, searchable, target, value) -> None:
    path, name = target  # none of the injections is a status, a sort, a boolean, a number, a cursor or a token
    refused(await admin.get(path, params={name: value}), 400, 422)


@FEW
@given(number=st.integers(min_value=2**63 - 2, max_value=2**80) | st.integers(max_value=-1))
@example(number=2**63)
async def test_huge_numbers_in_query_parameters_are_refused_or_answered_whole(admin, number) -> None:
    for path, name in (("/v1/audit/events", "after"), ("/v1/audit/events", "limit"), ("/v1/users", "limit")):
        response = await admin.get(path, params={name: number})  # a stream broken midway raises here
        if response.status_code >= 300:
            refused(response, 422)
        else:  # whole: every NDJSON line of the audit stream (none after the last record), or the page, parses
            for line in response.text.splitlines():
                json.loads(line)
