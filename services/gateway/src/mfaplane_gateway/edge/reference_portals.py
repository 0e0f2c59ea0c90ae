"""The reference portals, served as static files: an admin console at /admin, a user portal at /portal.

They show that the public /v1 API is all a portal needs: the pages call nothing but /v1, besides
their own `config.json`. Plain HTML, CSS and ES modules from `portals/` (no build step, nothing
fetched from the internet); `portals/common/` is shared by both and served under each, e.g.
`/portal/common/sign_in.js`.

The sign-in endpoints need a `portal` role API key. When `REFERENCE_PORTAL_API_KEY` is set, each
app's `config.json` hands that key to the browser, so it is public to anyone who can load the page.
That is acceptable because the portal role only allows the public sign-in flows (password, code,
setup of one's own MFA), which anyone may start anyway; a production portal keeps its key on its own
server and calls the gateway from there. When the setting is unset the apps say they are not configured.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from mfaplane_chassis.service import RuntimeDep
from mfaplane_eventing.aggregate import Refusal, Rejected

ROOT = Path(__file__).parent.parent / "portals"
COMMON = "common/"
APPS = {"admin": ROOT / "admin", "portal": ROOT / "user"}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The pages load only their own files and call only this origin; QR codes arrive as data: images.
# (`nosniff`, and `no-store` for config.json, come with every response: response_headers.py.)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
# The static files may be kept, but are checked again before each use.
STATIC_FILE_HEADERS = {**HEADERS, "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def static_file(app_dir: Path, path: str) -> Path:
    """The file `path` names under the app's folder (or the shared one); 404 for anything outside them."""
    root, relative = (ROOT / "common", path[len(COMMON):]) if path.startswith(COMMON) else (app_dir, path)
    root = root.resolve()
    candidate = (root / (relative or "index.html")).resolve()
    if not candidate.is_relative_to(root) or candidate.suffix not in MEDIA_TYPES or not candidate.is_file():
        raise Rejected("not_found", "No such page.", Refusal.NOT_FOUND)
    return candidate


def _routes(prefix: str, app_dir: Path) -> None:
    @router.get(f"/{prefix}", name=f"{prefix}_root")
    async def root() -> RedirectResponse:
        return RedirectResponse(f"/{prefix}/", status_code=308)

    @router.get(f"/{prefix}/config.json", name=f"{prefix}_config")
    async def config(runtime: RuntimeDep) -> JSONResponse:
        key = runtime.settings.reference_portal_api_key
        return JSONResponse({"configured": bool(key), "portal_api_key": key or None, "api_base": "/v1"},
                            headers=HEADERS)

    @router.get(f"/{prefix}/{{path:path}}", name=f"{prefix}_file")
    async def file(path: str) -> FileResponse:
        found = static_file(app_dir, path)
        return FileResponse(found, media_type=MEDIA_TYPES[found.suffix], headers=STATIC_FILE_HEADERS)


for _prefix, _dir in APPS.items():
    _routes(_prefix, _dir)
