"""The dev stack's service keys, as a test that plays a service (or an insider who stole a key) uses them."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Generator
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from mfaplane_chassis.service_auth import Call, CallSigner
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys


def public_keys(stack) -> TrustedKeys:
    return TrustedKeys.from_json(Path(stack.signing_env("gateway")["SERVICE_PUBLIC_KEYS_FILE"]).read_text())


def signing_settings(stack, service: str) -> dict[str, str]:
    """`service`'s signing settings, as keyword arguments of its settings class."""
    files = stack.signing_env(service)
    return {"service_signing_key": Path(files["SERVICE_SIGNING_KEY_FILE"]).read_text(),
            "service_public_keys": Path(files["SERVICE_PUBLIC_KEYS_FILE"]).read_text()}


def service_key(stack, service: str) -> ServiceKey:
    return ServiceKey.from_pem(Path(stack.signing_env(service)["SERVICE_SIGNING_KEY_FILE"]).read_text())


class SignedAs(httpx.Auth):
    """Signs each request to `audience` with `caller`'s key (or `key`), as the gateway's forwarder does."""

    requires_request_body = True

    def __init__(self, stack, audience: str, *, caller: str = "gateway", actor: str = "test:direct",
                 key: ServiceKey | None = None) -> None:
        self._signer = CallSigner(caller, key or service_key(stack, caller))
        self._audience, self._caller, self.actor = audience, caller, actor

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        call = Call(self._caller, self.actor, uuid.uuid4(), uuid.uuid4())
        request.headers["Authorization"] = self._signer.authorization(
            self._audience, request.method, request.url.raw_path.decode(), request.content, call)
        yield request


def direct(stack, service: str, **options) -> httpx.AsyncClient:
    """A client of `service`'s own API, not through the gateway: HTTPS verified with the stack's CA."""
    return httpx.AsyncClient(base_url=stack.url(service), verify=ssl.create_default_context(cafile=stack.https_ca),
                             **{"timeout": 30, **options})


async def publish(stack, topic: str, key: str, value: bytes) -> None:
    """Publishes one message as the tests' Kafka client."""
    producer = AIOKafkaProducer(**stack.kafka_client_options("tests"))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()
