"""The gateway's root URL, the first one `make run` prints: where the admin console, the user portal and
the API docs are. A browser gets a page; a client that asks for JSON gets the same links as JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from mfaplane_gateway.edge.reference_portals import HEADERS

LINKS = {
    "admin_console": ("/admin/", "Admin console", "require MFA, manage users, admins, systems and applications"),
    "user_portal": ("/portal/", "User portal", "sign in, set up an authenticator app, recovery codes"),
    "api_docs": ("/docs", "API docs (Swagger UI)", "every operation, its roles and error codes; try it out"),
    "api_reference": ("/redoc", "API reference (ReDoc)", "the same document, for reading"),
    "openapi": ("/openapi.json", "OpenAPI document", "the contract, for client generators"),
}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>mfaplane</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/portal/common/base.css">
</head>
<body>
  <header class="banner"><span class="brand">mfaplane</span></header>
  <main id="main">
    <h1>mfaplane is running</h1>
    <ul>
{items}
    </ul>
  </main>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/", response_model=None)
async def front_page(request: Request) -> HTMLResponse | JSONResponse:
    if _prefers_json(request.headers.get("accept", "")):
        return JSONResponse({key: path for key, (path, _, _) in LINKS.items()})
    items = "\n".join(f'      <li><a href="{path}">{title}</a>: {what}</li>' for path, title, what in LINKS.values())
    return HTMLResponse(PAGE.format(items=items), headers=HEADERS)


def _prefers_json(accept: str) -> bool:
    """JSON when asked for (`application/json`, `application/problem+json`) and HTML is not."""
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "text/html" not in types and bool(types & {"application/json", "application/problem+json"})
