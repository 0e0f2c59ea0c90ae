"""What every service's HTTP surface adds to its answers: `nosniff` always, `no-store` unless the route
set its own caching, and a 400 `invalid_text` problem for control characters in names or searches."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from mfaplane_contracts.text import DisplayName, plain_text
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.service import ServiceSpec, http_app
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
        raise Rejected("thing_not_found", "No such thing.", 404)
    return []


@router.get("/page")
async def page() -> PlainTextResponse:
    return PlainTextResponse("a page", headers={"Cache-Control": "no-cache"})


@pytest.fixture
async def client():
    app = http_app(ServiceSpec("test", ServiceSettings, routers=[router]), max_request_bytes=1000)
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
