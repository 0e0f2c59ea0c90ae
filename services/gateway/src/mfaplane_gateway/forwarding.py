"""Forwards commands to the owning service, passing who asked, the correlation id and an idempotency key."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from mfaplane_eventing import logs
from mfaplane_eventing.aggregate import Rejected

_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d1c6e-8a0e-4f4e-9d7c-3b1f2a9c5e10")
TIMEOUT = httpx.Timeout(10.0, connect=2.0)


def command_id(actor: str, operation: str, idempotency_key: str | None) -> str:
    """A client's Idempotency-Key, scoped to who sent it and to what, as the command id."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{actor}|{operation}|{idempotency_key}"))


class Forwarder:
    def __init__(self, base_urls: dict[str, str]) -> None:
        self._clients = {name: httpx.AsyncClient(base_url=url, timeout=TIMEOUT) for name, url in base_urls.items()}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def send(self, service: str, method: str, path: str, actor: str, body: Any = None,
                   idempotency_key: str | None = None) -> Any:
        """Returns the service's JSON answer; a refusal is re-raised as the same problem."""
        headers = {
            "X-Actor": actor,
            "X-Correlation-Id": logs.correlation_id.get() or str(uuid.uuid4()),
            "Idempotency-Key": command_id(actor, f"{method} {path}", idempotency_key),
        }
        try:
            response = await self._clients[service].request(method, path, json=body, headers=headers)
        except httpx.TransportError as error:
            raise Rejected("service_unavailable", f"The {service} service is not reachable; retry.", 503) from error
        if response.status_code >= 500:
            raise Rejected("service_unavailable", f"The {service} service failed ({response.status_code}); retry.", 503)
        if response.status_code >= 400:
            problem = response.json()
            extra = {k: v for k, v in problem.items() if k not in {"type", "title", "status", "detail", "code"}}
            raise Rejected(problem.get("code", "refused"), problem.get("detail", ""), response.status_code, **extra)
        return response.json()


async def forwarder(request: Request) -> Forwarder:
    return request.app.state.forwarder


ForwarderDep = Annotated[Forwarder, Depends(forwarder)]
