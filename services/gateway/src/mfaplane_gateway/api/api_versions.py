"""/v1's deprecation path: a change that would break a client is made behind a dated API version.

A client sends `API-Version: <date>` to get the shapes of that version. One that sends none gets the
shapes /v1 first had, and each answer in a shape that is going away says so with a `Deprecation`
header (RFC 9745: since when) and a `Sunset` header (RFC 8594: the last day it is served). After
the sunset (by the gateway's clock) the newest version is the default. Additions (a new field, a
new endpoint) need no version; a field or parameter that is going away is marked `deprecated` in the
OpenAPI document and is served until the sunset, and removed in a release after it. The README's
"Versions and deprecations" lists each change.

Versions:
- 2026-12-07: every list is a page, `{items, next_cursor}`, with `limit` and `cursor`
  (`GET /v1/systems` and `GET /v1/api-keys` were bare arrays of everything).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, Header, Response

from mfaplane_chassis.service import RuntimeDep

Version = Literal["2026-12-07"]
LATEST: Version = get_args(Version)[-1]
DEPRECATED_SINCE = datetime(2026, 12, 7, tzinfo=UTC)
SUNSET = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)
AskedVersion = Annotated[Version | None, Header(
    alias="API-Version", description=f"the API version whose shapes to answer in; without it, /v1's first shapes, "
                                     f"deprecated (Deprecation and Sunset headers) and served until {SUNSET.date()}, "
                                     f"then the newest version's")]


def served_version(runtime: RuntimeDep, api_version: AskedVersion = None) -> Version | None:
    """The version whose shapes to answer in: the one asked for; without one, None (/v1's first shapes)
    until the sunset, the newest version after it."""
    if api_version is None and runtime.clock.now() > SUNSET:
        return LATEST
    return api_version


ApiVersion = Annotated[Version | None, Depends(served_version)]

# The route's OpenAPI answer, for a route whose answer without API-Version is in a shape that is going away.
VERSIONED_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "in the shape of the API-Version sent; without one, in /v1's first shape, deprecated",
    "headers": {
        "Deprecation": {"description": "only on a deprecated shape: since when (RFC 9745)",
                        "schema": {"type": "string"}},
        "Sunset": {"description": "only on a deprecated shape: its last day (RFC 8594)", "schema": {"type": "string"}},
    },
}}


def deprecated_shape(response: Response) -> None:
    """Marks an answer given in a shape that is going away."""
    response.headers["Deprecation"] = f"@{int(DEPRECATED_SINCE.timestamp())}"
    response.headers["Sunset"] = format_datetime(SUNSET, usegmt=True)

