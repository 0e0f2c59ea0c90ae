"""The API docs a portal developer reads, and the gateway's front page: what they say, and that they work
without internet. The gateway's HTTP surface is served here without its databases or broker: these pages
and the OpenAPI document need none."""

from __future__ import annotations

import asyncio
import json
import os
import re
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from playwright.async_api import async_playwright, expect
from pydantic import TypeAdapter

from mfaplane_chassis.service import http_app, openapi_document
from mfaplane_devstack.supervisor import free_port
from mfaplane_gateway.__main__ import ROUTERS, SPEC
from mfaplane_gateway.api.api_docs import ASSET_TYPES, answer_type, dependency_calls, request_type, success_status
from mfaplane_gateway.edge import sign_in
from mfaplane_gateway.edge.auth import Roles, SteppedUp

DOCUMENT = json.loads(openapi_document(SPEC))
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "api-docs"


MAX_REQUEST_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(http_app(SPEC, MAX_REQUEST_BYTES)) as test_client:
        yield test_client


def _routes() -> Iterator[tuple[str, str, APIRoute]]:
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                yield from ((method, route.path, route) for method in route.methods)


@pytest.mark.parametrize("method, path, route", list(_routes()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_operation_says_who_may_call_it_and_how_it_refuses(method: str, path: str, route: APIRoute) -> None:
    operation = DOCUMENT["paths"][path][method.lower()]
    description = operation["description"]
    assert operation["summary"]
    checks = [call for call in dependency_calls(route.dependant) if isinstance(call, Roles)]
    if any(isinstance(check, SteppedUp) for check in checks):
        assert "an API key is refused" in description
    else:
        roles = re.search(r"\*\*Roles:\*\* (.*)", description).group(1)
        assert set(re.findall(r"`(\w+)`", roles.split("(")[0])) == {r for c in checks for r in c.roles}
    assert "- 401 `unauthenticated`" in description and "- 403 `forbidden`" in description


def _shown(media: dict) -> list:
    """The example values an OpenAPI media type object holds."""
    named = [one["value"] for one in media.get("examples", {}).values()]
    return ([media["example"]] if "example" in media else []) + named


@pytest.mark.parametrize("method, path, route", [one for one in _routes() if one[1].startswith("/v1/")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_operation_shows_examples_of_what_it_reads_and_answers(method: str, path: str, route: APIRoute) -> None:
    operation = DOCUMENT["paths"][path][method.lower()]
    reads = operation.get("requestBody", {}).get("content", {})
    success = str(success_status(route))
    answers = operation["responses"][success].get("content", {})
    assert all(_shown(media) for media in reads.values()), "the request body has no example"
    assert "application/json" not in answers or _shown(answers["application/json"]), "the answer has no example"
    for media_type, media, model in [*((*one, request_type(route)) for one in reads.items()),
                                     *((*one, answer_type(route)) for one in answers.items())]:
        for value in _shown(media):
            if media_type == "application/json":  # (FastAPI gives NDJSON lines a schema no value meets)
                Draft202012Validator({**media["schema"], "components": DOCUMENT["components"]},
                                     format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)
            if model is not None:  # what the code reads or writes: its own checks too (one first factor, ...)
                TypeAdapter(model).validate_json(json.dumps(value))


SECRET_FIELDS = {"key", "session", "challenge", "token", "signature"}


def _secrets(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from [inner] if name in SECRET_FIELDS and isinstance(inner, str) else _secrets(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _secrets(inner)


def test_no_example_holds_a_key_or_token_that_could_be_real() -> None:
    shown = [value for operations in DOCUMENT["paths"].values() for operation in operations.values()
             for answer in [operation.get("requestBody", {}), *operation["responses"].values()]
             for media in answer.get("content", {}).values() for value in _shown(media)]
    secrets = list(_secrets(shown))
    assert re.search(r"'mfp_[0-9a-f]{32}_[A-Za-z0-9_-]{43}'", str(secrets)) and len(secrets) > 20
    assert all("EXAMPLE" in secret for secret in secrets)


def test_refusals_are_found_in_the_functions_an_operation_calls() -> None:
    def errors(method: str, path: str) -> str:
        return DOCUMENT["paths"][path][method]["description"].split("**Errors**")[1]

    # raised in the endpoint's own code, in a dependency, and two calls down (a read waiting for a token)
    assert "- 403 `agent_key_of_another_system`" in errors("post", "/v1/systems/{system_id}/authorize")
    assert "- 429 `rate_limited`" in errors("post", "/v1/portal/verify")
    assert "- 401 `invalid_challenge`" in errors("post", "/v1/portal/verify")
    assert "- 503 `projection_behind`" in errors("get", "/v1/users")
    assert "- 403 `step_up_required`" in errors("post", "/v1/api-keys")
    assert "- 403 `step_up_required`" not in errors("get", "/v1/api-keys")
    assert "passed on with its own status" in errors("post", "/v1/users")  # a write forwarded to identity


def test_the_guide_chains_every_sign_in_outcome_and_explains_the_consistency_token() -> None:
    guide = DOCUMENT["info"]["description"]
    table = guide.split("## Signing in")[1].split("##")[0]
    for outcome in typing.get_args(sign_in.Outcome):
        assert re.search(rf"^\| `{outcome}` \|", table, re.M), outcome
    for step in ("/verify", "/dismiss-prompt", "/setup/begin", "/setup/confirm", "invalid_challenge"):
        assert step in table
    reading = guide.split("## Reading your own writes", 1)[1]
    assert "consistent_with=" in reading and "`projection_behind`" in reading and "`GET /v1/users`" in reading


def test_the_docs_pages_load_only_files_the_gateway_serves(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert not re.search(r"https?://", html), f"{page} refers to another site"
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]|spec-url=["']([^"']+)""", html)
        assert references
        for reference in ("".join(groups) for groups in references):
            answer = client.get(reference)
            assert answer.status_code == 200, reference
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.headers["content-type"].startswith("text/javascript") and len(asset.content) > 100_000


@pytest.mark.parametrize("name", ["__init__.py", "..%2F__init__.py", "..%2F..%2Ffastapi%2F__init__.py", "static"])
def test_nothing_but_the_docs_assets_is_served_from_the_package(client: TestClient, name: str) -> None:
    assert client.get(f"/docs/assets/{name}").status_code == 404
    assert name not in ASSET_TYPES


def test_the_front_page_links_the_console_the_portal_and_the_docs(client: TestClient) -> None:
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    links = dict((title, href) for href, title in re.findall(r'<a href="([^"]+)">([^<]+)</a>', page.text))
    assert {links["Admin console"], links["User portal"], links["API docs (Swagger UI)"]} == \
        {"/admin/", "/portal/", "/docs"}
    for href in links.values():
        assert client.get(href).status_code == 200, href
    assert client.get("/").headers["content-type"].startswith("text/html")  # curl's */*


def test_a_json_client_gets_the_links_as_json(client: TestClient) -> None:
    answer = client.get("/", headers={"Accept": "application/json"})
    assert answer.json()["admin_console"] == "/admin/" and answer.json()["api_docs"] == "/docs"


@pytest.fixture
async def served() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(http_app(SPEC, MAX_REQUEST_BYTES), host="127.0.0.1",
                                           port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_swagger_ui_and_redoc_render_without_internet(served: str) -> None:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    elsewhere: list[str] = []
    script_errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1280, "height": 900})

        async def only_the_gateway(route) -> None:
            if urlsplit(route.request.url).netloc == urlsplit(served).netloc or route.request.url.startswith("data:"):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        await page.route("**/*", only_the_gateway)
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        try:
            await page.goto(served + "/docs")
            await expect(page.get_by_role("heading", name="Signing in: outcome, then the next call")).to_be_visible()
            await expect(page.locator(".opblock-summary-path", has_text="/v1/users/{user_id}").first).to_be_visible()
            await page.screenshot(path=ARTIFACTS / "swagger-ui.png")
            await page.goto(served + "/redoc#section/Signing-in:-outcome-then-the-next-call")
            await expect(page.get_by_role("columnheader", name="what the person sees")).to_be_visible()
            heading = page.get_by_role("heading", name="Reading your own writes: the consistency token")
            await expect(heading).to_be_visible()
            await page.screenshot(path=ARTIFACTS / "redoc.png")
        finally:
            await browser.close()
    assert elsewhere == [] and script_errors == []
