"""/v1's deprecation path on the gateway's clock: a client that sends no API-Version gets /v1's first
shapes, marked deprecated, until the sunset, and the newest version's from the moment after it."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from types import SimpleNamespace

import httpx
from fastapi import FastAPI, Response

from mfaplane_chassis.service import current_runtime
from mfaplane_gateway.api.api_versions import LATEST, SUNSET, ApiVersion, deprecated_shape


async def get(moment: datetime, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET of a route whose shape depends on the version, from an app whose clock is at `moment`."""
    app = FastAPI()

    @app.get("/shape")
    async def shape(response: Response, api_version: ApiVersion = None) -> dict:
        if api_version is None:
            deprecated_shape(response)
        return {"version": api_version}

    app.dependency_overrides[current_runtime] = lambda: SimpleNamespace(clock=SimpleNamespace(now=lambda: moment))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        return await client.get("/shape", headers=headers)


async def test_without_a_version_the_first_shapes_are_served_marked_deprecated_until_the_sunset() -> None:
    answer = await get(SUNSET)
    assert answer.json() == {"version": None}
    assert parsedate_to_datetime(answer.headers["Sunset"]) == SUNSET and "Deprecation" in answer.headers


async def test_after_the_sunset_the_newest_version_is_the_default_and_no_past_sunset_is_announced() -> None:
    answer = await get(SUNSET + timedelta(seconds=1))
    assert answer.json() == {"version": LATEST}
    assert "Sunset" not in answer.headers and "Deprecation" not in answer.headers


async def test_a_version_asked_for_is_served_before_and_after_the_sunset() -> None:
    for moment in (SUNSET - timedelta(days=1), SUNSET + timedelta(days=1)):
        assert (await get(moment, {"API-Version": LATEST})).json() == {"version": LATEST}
