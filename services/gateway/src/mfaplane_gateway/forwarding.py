"""Forwards commands to the owning service, passing who asked, the correlation id and an idempotency key.

All three travel inside a token the gateway signs for each request (service_auth.py): identity and
mfa trust nothing else, so no header a client sets decides who did something.

The client is aiohttp's, not httpx's: httpx's connection pool checks every pooled connection at each
request, a cost aiohttp does not have (docs/performance.md). aiohttp keeps idle connections 15 s,
well under the services' keep-alive (HTTP_KEEP_ALIVE_SECONDS), so an idle connection is closed by
the client, not by a server that could close it just as a command is sent on it. (A service that
restarts still cuts its connections: the command in flight gets 503, and the client retries.)
"""

from __future__ import annotations

import json
import logging
import ssl
import uuid
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request

from mfaplane_eventing import logs
from mfaplane_eventing.aggregate import Rejected
from mfaplane_eventing.problems import ServiceUnavailable
from mfaplane_eventing.service_auth import CALLER_NOT_AUTHENTICATED, Call, CallSigner

log = logging.getLogger(__name__)
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d1c6e-8a0e-4f4e-9d7c-3b1f2a9c5e10")
TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=2.0)
CONNECTIONS_PER_SERVICE = 100
# What a call that got no answer raises: the service down or restarting, a cut connection, a timeout.
UNANSWERED = (aiohttp.ClientError, TimeoutError)


def command_id(actor: str, operation: str, idempotency_key: str | None) -> str:
    """A client's Idempotency-Key, scoped to who sent it and to what, as the command id."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{actor}|{operation}|{idempotency_key}"))


class Forwarder:
    def __init__(self, base_urls: dict[str, str], signer: CallSigner, ca_file: str | None = None) -> None:
        """`ca_file`: the CA that identity's and mfa's HTTPS certificates must chain to (None: the system's)."""
        self._base_urls = {name: url.rstrip("/") for name, url in base_urls.items()}
        self._signer = signer
        # No cookie jar: a cookie one caller's command got back must never go out with another's.
        self._session = aiohttp.ClientSession(
            timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_SERVICE,
                                           ssl=ssl.create_default_context(cafile=ca_file)))

    async def close(self) -> None:
        await self._session.close()

    async def send(self, service: str, method: str, path: str, actor: str, body: Any = None,
                   idempotency_key: str | None = None) -> Any:
        """Returns the service's JSON answer; a refusal is re-raised as the same problem (Rejected), an
        outage as ServiceUnavailable."""
        call = Call("gateway", actor, uuid.UUID(logs.correlation_id.get() or str(uuid.uuid4())),
                    uuid.UUID(command_id(actor, f"{method} {path}", idempotency_key)))
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Authorization": self._signer.authorization(service, method, path, data, call)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(method, self._base_urls[service] + path, data=data, headers=headers,
                                             allow_redirects=False) as response:
                status, content = response.status, await response.read()
        except UNANSWERED as error:
            raise ServiceUnavailable(f"The {service} service is not reachable; retry.") from error
        if status >= 500:
            raise ServiceUnavailable(f"The {service} service failed ({status}); retry.")
        if status >= 400:
            problem = json.loads(content)
            if problem.get("code") == CALLER_NOT_AUTHENTICATED:  # the gateway's keys, not the client's doing
                log.error("a service refused the gateway's signed call", extra={"service": service,
                                                                               "detail": problem.get("detail")})
                raise ServiceUnavailable(f"The {service} service is not reachable; retry.")
            extra = {k: v for k, v in problem.items() if k not in {"type", "title", "status", "detail", "code"}}
            raise Rejected(problem.get("code", "refused"), problem.get("detail", ""), status, **extra)
        return json.loads(content)


async def forwarder(request: Request) -> Forwarder:
    return request.app.state.forwarder


ForwarderDep = Annotated[Forwarder, Depends(forwarder)]
