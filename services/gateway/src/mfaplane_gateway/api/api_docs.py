"""The API documentation a portal developer reads: Swagger UI at /docs and ReDoc at /redoc, and an
OpenAPI document that says, for every operation, who may call it, which problem codes it answers, and
shows examples of what it reads and answers (api_examples.py).

The pages load their scripts from the pinned `fastapi-offline` package (served under /docs/assets/),
never from a CDN, so they work without internet. Roles and error codes are worked out from the code
(the `Roles` dependencies and the `Rejected` refusals an operation and the gateway functions it calls
can raise), not written by hand beside each route, so they cannot drift from what is enforced.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.resources import files
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute

from mfaplane_chassis.problems import REFUSAL_STATUSES
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.auth import ROLES, Roles, SteppedUp
from mfaplane_gateway.edge.forwarding import forwarder
from mfaplane_gateway.settings import GatewaySettings

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/assets"
ASSETS = files("fastapi_offline") / "static"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
TITLE = "mfaplane API"
DEFAULT_KIND = inspect.signature(Rejected).parameters["kind"].default
STEP_UP_MINUTES = GatewaySettings.model_fields["step_up_seconds"].default // 60
WAIT_SECONDS = GatewaySettings.model_fields["read_your_writes_timeout_seconds"].default

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    # validatorUrl: Swagger UI would otherwise send the document to an online validator.
    return _own_origin_only(get_swagger_ui_html(
        openapi_url=OPENAPI_URL, title=TITLE, swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None}))


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return _own_origin_only(get_redoc_html(
        openapi_url=OPENAPI_URL, title=TITLE, redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False))


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    """A policy that lets the page reach nothing but this origin: ReDoc shows a logo from its vendor's CDN
    whatever its options, and this keeps it (and anything else) from being fetched. The page's own inline
    script is allowed by its hash; Swagger UI and ReDoc set styles inline, and ReDoc searches in a worker."""
    scripts = re.findall(r"<script>(.*?)</script>", bytes(page.body).decode(), re.S)
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
                     for script in scripts)
    page.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return page


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSET_TYPES:
        raise Rejected("not_found", "No such file.", Refusal.NOT_FOUND)
    # no-cache: kept by the browser, but checked again, so an upgraded package is picked up at once
    return FileResponse(str(ASSETS / name), media_type=ASSET_TYPES[name], headers={"Cache-Control": "no-cache"})


# -- what each operation says about itself -------------------------------------------------------------


def finish_document(routers: Iterable[APIRouter], examples: Mapping[Any, dict[str, Any]],
                    document: dict[str, Any]) -> None:
    """Completes the generated document, once, when it is first asked for: reading the code for roles and
    codes takes about half a second, which a gateway's start-up need not pay."""
    describe_operations(routers, document)
    show_examples(routers, examples, document)


def describe_operations(routers: Iterable[APIRouter], document: dict[str, Any]) -> None:
    """Sets each operation's description: its docstring, then the roles it needs and the codes it refuses with."""
    for route in _operations(routers):
        text = "\n\n".join(part for part in (inspect.cleandoc(route.endpoint.__doc__ or ""), roles_text(route),
                                             errors_text(route)) if part)
        for method in route.methods or ():
            document["paths"][route.path][method.lower()]["description"] = text


def _operations(routers: Iterable[APIRouter]) -> Iterator[APIRoute]:
    for router in routers:
        yield from (route for route in router.routes if isinstance(route, APIRoute) and route.include_in_schema)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """The operation's own dependant and every dependency's, however deep."""
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    yield from (one.call for one in _dependants(dependant) if one is not dependant and one.call is not None)


def query_names(route: APIRoute) -> set[str]:
    return {param.alias for one in _dependants(route.dependant) for param in one.query_params}


def roles_text(route: APIRoute) -> str:
    checks = [call for call in dependency_calls(route.dependant) if isinstance(call, Roles)]
    if any(isinstance(check, SteppedUp) for check in checks):
        return (f"**Who may call:** a signed-in admin's session token whose code was checked in the last "
                f"{STEP_UP_MINUTES} minutes (`POST /v1/admin-portal/step-up`); an API key is refused.")
    allowed = {role for check in checks for role in check.roles}
    if not allowed:
        return ""
    text = "**Roles:** " + ", ".join(f"`{role}`" for role in ROLES if role in allowed)
    if "admin" in allowed:
        text += " (a signed-in admin's session token counts as `admin`)"
    return text + "."


def errors_text(route: APIRoute) -> str:
    codes = refusals(route)
    lines = [f"- {status} `{code}`" for status, code in sorted(codes)]
    if forwarder in dependency_calls(route.dependant):
        lines.append("- and what the identity or mfa service refuses, passed on with its own status and `code`")
    return "**Errors** (problem details, by `code`):\n" + "\n".join(lines) if lines else ""


def refusals(route: APIRoute) -> set[tuple[int, str]]:
    """(status, code) of every refusal the operation can answer that the gateway's code names."""
    seen: set[Callable[..., Any]] = set()
    functions = [route.endpoint, *(f for call in dependency_calls(route.dependant) for f in _functions(call))]
    found = set().union(*(_raised(function, seen) for function in functions))
    if _takes_input(route):
        found.add((422, "validation_error"))
    if forwarder in dependency_calls(route.dependant):
        found.add((503, "service_unavailable"))
    return found


def _takes_input(route: APIRoute) -> bool:
    return any(one.path_params or one.query_params or one.header_params or one.body_params
               for one in _dependants(route.dependant))


def _functions(call: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The function a dependency runs: itself, or for an instance (Roles) every `__call__` along its classes."""
    if inspect.isfunction(call):
        return [call]
    return [cls.__dict__["__call__"] for cls in type(call).__mro__ if "__call__" in cls.__dict__]


def _raised(function: Callable[..., Any], seen: set[Callable[..., Any]]) -> set[tuple[int, str]]:
    """The refusals `function` makes, and those of the gateway functions and methods it names."""
    if not inspect.isfunction(function) or not _ours(function) or function in seen:
        return set()
    seen.add(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = _names(function)
    types = _types(function, tree, names)
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _resolve(node.func, names, types) is Rejected:
            found |= _refusal(node, names)
        elif isinstance(node, (ast.Name, ast.Attribute)):
            found |= _raised(_resolve(node, names, types), seen)
    return found


def _ours(thing: Any) -> bool:
    return getattr(thing, "__module__", "").startswith("mfaplane_gateway")


def _names(function: Callable[..., Any]) -> dict[str, Any]:
    """What the names in `function` refer to: its module's, then its enclosing function's (a closure)."""
    closure = {}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (), strict=True):
        try:
            closure[name] = cell.cell_contents
        except ValueError:  # not bound yet
            pass
    return {**function.__globals__, **closure}


def _types(function: Callable[..., Any], tree: ast.AST, names: dict[str, Any]) -> dict[str, type]:
    """The gateway classes of `function`'s typed parameters and variables, and of `self` in a method."""
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    found = {name: typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
             for name, hint in hints.items()}
    found |= {node.target.id: names.get(node.annotation.id) for node in ast.walk(tree)
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and isinstance(node.annotation, ast.Name)}
    owner = function.__qualname__.rpartition(".")[0]
    if owner and "<locals>" not in owner:
        found["self"] = getattr(inspect.getmodule(function), owner, None)
    return {name: cls for name, cls in found.items() if inspect.isclass(cls) and _ours(cls)}


def _resolve(node: ast.expr, names: dict[str, Any], types: dict[str, type]) -> Any:
    """What a name, `module.name` or `typed_variable.method` refers to; None when it cannot be told."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        holder = types.get(node.value.id) or names.get(node.value.id)
        return getattr(holder, node.attr, None) if inspect.ismodule(holder) or inspect.isclass(holder) else None
    return None


def _refusal(call: ast.Call, names: dict[str, Any]) -> set[tuple[int, str]]:
    """`Rejected(code, detail, kind)` with a code known before it runs (a literal or a module constant), and
    the status its kind is answered with."""
    code = _constant(call.args[0], names) if call.args else None
    positional = call.args[2] if len(call.args) > 2 else None
    kind_node = next((k.value for k in call.keywords if k.arg == "kind"), positional)
    kind = DEFAULT_KIND if kind_node is None else _resolve(kind_node, names, {})
    return {(REFUSAL_STATUSES[kind], code)} if isinstance(code, str) and isinstance(kind, Refusal) else set()


def _constant(node: ast.expr, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    return names.get(node.id) if isinstance(node, ast.Name) else None


# -- examples -----------------------------------------------------------------------------------------------


def show_examples(routers: Iterable[APIRouter], examples: Mapping[Any, dict[str, Any]],
                  document: dict[str, Any]) -> None:
    """Puts the named examples of each operation's JSON request body and success answer beside their schemas in
    the generated `document`, by their type (`examples`: api_examples.EXAMPLES); an answer of one type or another
    shows the examples of each. Done on the generated document, as FastAPI's generator would drop their nulls."""
    for route in _operations(routers):
        for method in route.methods or ():
            operation = document["paths"][route.path][method.lower()]
            if shown := _examples_of(request_type(route), examples):
                operation["requestBody"]["content"]["application/json"]["examples"] = shown
            if shown := _examples_of(answer_type(route), examples):
                for media in operation["responses"][str(success_status(route))]["content"].values():
                    media["examples"] = shown


def request_type(route: APIRoute) -> Any:
    """The type of the JSON body the operation reads, if it reads one."""
    return route.body_field.field_info.annotation if route.body_field else None


def answer_type(route: APIRoute) -> Any:
    """The type of the success answer: the route's response model, or one declared for its status (NDJSON lines)."""
    return route.response_model or route.responses.get(success_status(route), {}).get("model")


def success_status(route: APIRoute) -> int:
    return route.status_code or 200


def _examples_of(kind: Any, examples: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    if kind in examples:
        return examples[kind]
    if isinstance(kind, types.UnionType):
        return {name: shown for member in typing.get_args(kind)
                for name, shown in _examples_of(member, examples).items()}
    return {}


# -- what spans operations -----------------------------------------------------------------------------


def guide(routers: Iterable[APIRouter]) -> str:
    """The OpenAPI document's description: how to call, how the sign-in steps chain, and reading one's writes."""
    reads = sorted(route.path for route in _operations(routers) if "consistent_with" in query_names(route))
    return GUIDE.format(step_up=STEP_UP_MINUTES, wait=f"{WAIT_SECONDS:g}",
                        reads=", ".join(f"`GET {path}`" for path in reads))


GUIDE = """\
The public API of mfaplane, for admin consoles, user portals, auditors and system agents. Each operation
says which roles may call it and the problem `code`s it can answer.

## Calling the API

Send `Authorization: Bearer <token>`: an API key (`mfp_...`) with one role (`admin`, `auditor`, `portal`,
`system_agent`; `sso_client`, an SSO application's client secret, calls none of /v1), or the session token of an admin signed in through `/v1/admin-portal`, which acts as `admin`.
Making admins or API keys needs an admin session whose code is at most {step_up} minutes old. Errors are
RFC 9457 problem details (`application/problem+json`) with a stable `code`; every 429 and 503 carries
`Retry-After` (seconds). A write retried with the same `Idempotency-Key` header is applied once.

## Signing in: outcome, then the next call

The user portal calls `/v1/portal/...`, the admin console `/v1/admin-portal/...`, both with a `portal` key.
`POST .../sign-in` with email and password answers an `outcome`:

| outcome | what the person sees | next call |
|---|---|---|
| `signed_in` | they are in | keep `session`; `POST .../session` reads it, `POST .../sign-out` ends it |
| `mfa_required` | enter a code from the authenticator app (or a recovery code) | `POST .../verify` with `challenge` and `code` → `signed_in` |
| `enrollment_prompt` | set up MFA now, or later: `days_remaining`, `deadline` | set up as for `setup_required`, or `POST .../dismiss-prompt` with `challenge` → `signed_in` |
| `setup_required` | set up MFA before going on | `POST .../setup/begin` with `challenge` (QR code, key, otpauth URI), then `POST .../setup/confirm` with `challenge` and the first `code` → `signed_in` with `recovery_codes`, shown once |
| `locked_out` | the deadline passed: an admin must extend or reset their MFA | none |

A `challenge` is short-lived and serves one step: 401 `invalid_challenge` means starting again at
`sign-in`. Wrong passwords and codes are throttled (429 `rate_limited`, with `Retry-After`). A signed-in
admin proves their code again with `POST /v1/admin-portal/step-up` before the operations that need it.

## Reading your own writes: the consistency token

A write answers as soon as the change is stored, with a receipt: `id` (what it was about) and a
`consistency_token`. The lists and details are projections that catch up a moment later, so a read right
after a write may not show it yet. To read your own write, pass the token back:
`GET /v1/users?status=enrolling&consistent_with=<consistency_token>` (repeatable, up to 20 tokens). The read
then waits, at most {wait} seconds, until the change is visible, or answers 503 `projection_behind` with
`Retry-After`. A bulk result carries one token, `bulk:<id>`, for all of its changes; while a bulk on users
is still being applied it answers 503 `operation_running`. Reads that take `consistent_with`: {reads}.
"""  # noqa: E501 - the published guide's lines, its table rows among them, are kept as they are
