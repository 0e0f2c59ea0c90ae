"""What every service's HTTP surface adds to its answers: `nosniff` always, `no-store` unless the route
set its own caching, a 400 `invalid_text` problem for control characters in names or searches, and
`Retry-After` on every 429 and 503."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from mfaplane_chassis.service import ServiceSpec, current_runtime, http_app
from mfaplane_contracts.text import DisplayName, plain_text
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.settings import ServiceSettings

router = APIRouter()


class Named(BaseModel):
    name: DisplayName
    size: int = 1


@router.post("/things")
async def create(body: Named) -> dict:
    return {"name": body.name}


@router.get("/things")
async def search(q: Annotated[plain_text(20) | None, Query()] = None) -> list:
    if q == "missing":
        raise Rejected("thing_not_found", "No such thing.", Refusal.NOT_FOUND)
    return []


@router.get("/page")
async def page() -> PlainTextResponse:
    return PlainTextResponse("a page", headers={"Cache-Control": "no-cache"})


@router.get("/busy/{kind}")
async def busy(kind: str) -> None:
    match kind:
        case "throttled":
            raise Rejected("throttled", "Too many.", Refusal.THROTTLED, retry_after=7)
        case "unavailable":
            raise Rejected("service_unavailable", "Away.", Refusal.NOT_READY)
        case "plain-429":
            raise HTTPException(429, "Too many.")
        case "database":
            raise asyncpg.CannotConnectNowError("starting up")


class _AwayPool:
    async def fetchval(self, query: str) -> None:
        raise OSError("no route to the database")


class _AwayRuntime:
    pool = _AwayPool()
    producer = None  # no broker either: `producer.client` fails


@pytest.fixture
async def client():
    app = http_app(ServiceSpec("test", ServiceSettings, routers=[router]), max_request_bytes=1000)
    app.dependency_overrides[current_runtime] = lambda: _AwayRuntime()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        yield http


async def test_every_answer_is_nosniff_and_not_stored(client) -> None:
    answers = [await client.post("/things", json={"name": "Ada"}), await client.get("/things", params={"q": "x"}),
               await client.get("/things", params={"q": "missing"}), await client.get("/nowhere"),
               await client.post("/things", json={"name": ""}), await client.post("/things", content=b"x" * 2000)]
    assert [a.status_code for a in answers] == [200, 200, 404, 404, 422, 413]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store" and answer.headers["pragma"] == "no-cache"


async def test_a_route_with_its_own_caching_keeps_it(client) -> None:
    answer = await client.get("/page")
    assert answer.headers["cache-control"] == "no-cache" and "pragma" not in answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("text", ["a\x00b", "\u2028", "esc\x1b", "\x9b"])
async def test_control_characters_are_a_400_invalid_text_naming_the_field(client, text: str) -> None:
    for answer, where in ((await client.post("/things", json={"name": text}), ["body", "name"]),
                          (await client.get("/things", params={"q": text}), ["query", "q"])):
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["code"] == "invalid_text" and [e["loc"] for e in problem["errors"]] == [where]
        assert text not in answer.text, "the refused value is not echoed"


async def test_with_other_errors_it_stays_a_422(client) -> None:
    answer = await client.post("/things", json={"name": "a\x00", "size": "big"})
    assert answer.status_code == 422 and answer.json()["code"] == "validation_error"


@pytest.mark.parametrize(("path", "status", "retry_after"), [
    ("/busy/throttled", 429, "7"),  # the refusal's own retry_after, in the body and the header
    ("/busy/unavailable", 503, "2"), ("/busy/plain-429", 429, "2"), ("/busy/database", 503, "2"),
    ("/readyz", 503, "2"),
])
async def test_every_429_and_503_says_when_to_retry(client, path: str, status: int, retry_after: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == status and answer.headers["Retry-After"] == retry_after, answer.headers
