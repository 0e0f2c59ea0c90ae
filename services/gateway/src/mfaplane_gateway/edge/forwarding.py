"""Calls identity's and mfa's endpoints (contracts `endpoints.py`), passing who asked, the correlation id
and the command id.

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
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from mfaplane_chassis.problems import ServiceUnavailable, UnreadableAnswer, refusal_kind
from mfaplane_chassis.service_auth import CALLER_NOT_AUTHENTICATED, Call, CallSigner
from mfaplane_contracts.endpoints import Endpoint
from mfaplane_eventing import logs
from mfaplane_eventing.aggregate import Rejected

log = logging.getLogger(__name__)
AnswerT = TypeVar("AnswerT")
TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=2.0)
CONNECTIONS_PER_SERVICE = 100
# What a call that got no answer raises: the service down or restarting, a cut connection, a timeout.
UNANSWERED = (aiohttp.ClientError, TimeoutError)


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

    async def call(self, endpoint: Endpoint[AnswerT], actor: str, body: BaseModel | None = None, *,
                   idempotency_key: str | None = None, query: dict[str, str] | None = None, **params: Any) -> AnswerT:
        """The service's answer to `endpoint` with `params` in its path; a refusal is re-raised as the same
        problem (Rejected), an outage as ServiceUnavailable."""
        path = endpoint.url(params) + (f"?{urlencode(query)}" if query else "")
        call = Call("gateway", actor, uuid.UUID(logs.correlation_id.get() or str(uuid.uuid4())),
                    endpoint.command_id(actor, params, idempotency_key))
        # exclude_unset: a field the caller left out stays out ("absent leaves it as it is")
        data = b"" if body is None else body.model_dump_json(exclude_unset=True).encode()
        headers = {"Authorization": self._signer.authorization(endpoint.service, endpoint.method, path, data, call)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(endpoint.method, self._base_urls[endpoint.service] + path, data=data,
                                             headers=headers, allow_redirects=False) as response:
                status, content = response.status, await response.read()
        except UNANSWERED as error:
            raise ServiceUnavailable(f"The {endpoint.service} service is not reachable; retry.") from error
        if status >= 400:
            raise _refusal(endpoint.service, status, content)
        try:
            return endpoint.read(content)
        except ValidationError as error:  # a release this gateway does not know (a rolling upgrade)
            log.error("a service's answer is not what its endpoint declares",
                      extra={"service": endpoint.service, "path": endpoint.path,
                             "fields": [e["loc"] for e in error.errors()]})
            raise UnreadableAnswer(f"The {endpoint.service} service answered what this gateway cannot read: "
                                   "the request may have been applied; check before sending it again.") from None


def _refusal(service: str, status: int, content: bytes) -> Exception:
    if status >= 500:
        return ServiceUnavailable(f"The {service} service failed ({status}); retry.")
    problem = json.loads(content)
    if problem.get("code") == CALLER_NOT_AUTHENTICATED:  # the gateway's keys, not the client's doing
        log.error("a service refused the gateway's signed call", extra={"service": service,
                                                                       "detail": problem.get("detail")})
        return ServiceUnavailable(f"The {service} service is not reachable; retry.")
    extra = {k: v for k, v in problem.items() if k not in {"type", "title", "status", "detail", "code"}}
    return Rejected(problem.get("code", "refused"), problem.get("detail", ""), refusal_kind(status), **extra)


async def forwarder(request: Request) -> Forwarder:
    return request.app.state.forwarder


ForwarderDep = Annotated[Forwarder, Depends(forwarder)]
