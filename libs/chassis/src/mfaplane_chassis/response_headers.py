"""Headers on every response of a service's API, set in one place rather than route by route.

`X-Content-Type-Options: nosniff` on all of them: a browser takes each body for the type it is
declared as, never for a script or page it guesses. `Cache-Control: no-store` (and `Pragma:
no-cache` for HTTP/1.0 caches) unless the route chose its own caching: API answers carry sign-in
challenges, sessions, TOTP keys, recovery codes, API keys or personal data, none of which a
browser or proxy may keep. Only the reference portals' static files set a policy of their own.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                    headers["Pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)
