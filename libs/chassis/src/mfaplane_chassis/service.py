"""How every service process starts: `python -m mfaplane_<service> {serve,migrate,republish,park-held}`.

`serve` runs one asyncio loop holding the HTTP API (uvicorn), the metrics endpoint on a port of its
own, the outbox relay, the consumers (if the service consumes: in its own group and in any beside
it) and the service's own background loops. SIGTERM (uvicorn's) stops the HTTP server, then each
consumer finishes its message and commits offsets, then everything else stops.

A service with `callers` answers, on every API route, only requests signed by one of those
services (service_auth.py); its health probes stay open, and /metrics is not on the API port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import create_model
from pydantic_settings import BaseSettings

from mfaplane_chassis import problems
from mfaplane_chassis.body_limit import BodyLimit
from mfaplane_chassis.response_headers import ResponseHeaders
from mfaplane_chassis.service_auth import CallSigner, CallVerifier, verified_call
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.topics import Topic, consumer_group_id
from mfaplane_eventing import clock as clocks
from mfaplane_eventing import db, logs
from mfaplane_eventing.consumer import BatchHandler, Consumer, Handler, park_oldest_held
from mfaplane_eventing.event_store import EventStore
from mfaplane_eventing.kafka_security import KafkaSecurity
from mfaplane_eventing.outbox_relay import OutboxRelay
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys
from mfaplane_eventing.settings import DatabaseSettings, ServiceSettings, load

log = logging.getLogger(__name__)
API_VERSION = "1.0.0"
READY_TIMEOUT_SECONDS = 2.0
BROKER_RETRY_SECONDS = 1.0
PRODUCE_BATCH_BYTES = 256 * 1024


@dataclass
class Runtime:
    """What a running service has at hand: its settings, clock, database, event store and keys."""

    settings: Any
    clock: clocks.Clock
    pool: asyncpg.Pool
    store: EventStore
    producer: AIOKafkaProducer
    trust: Trust


@dataclass(frozen=True)
class Trust:
    """The service's own key, every service's public keys, and how it reaches Kafka."""

    key: ServiceKey
    keys: TrustedKeys
    kafka: KafkaSecurity

    @classmethod
    def from_settings(cls, service: str, settings: ServiceSettings) -> Trust:
        """Refuses to start a service whose own key is not among the public keys: every consumer would
        refuse what it publishes, so it must fail here, loudly, not downstream, one event at a time."""
        key = ServiceKey.from_pem(settings.service_signing_key)
        keys = TrustedKeys.from_json(settings.service_public_keys)
        if keys.service_of(key.key_id) != service:
            raise SystemExit(f"configuration error: SERVICE_PUBLIC_KEYS does not list {service}'s key {key.key_id}")
        return cls(key, keys, KafkaSecurity.from_settings(settings))

    def call_signer(self, service: str) -> CallSigner:
        return CallSigner(service, self.key)


@dataclass(frozen=True)
class CliCommand:
    """An operator command of a service, e.g. `python -m mfaplane_identity create-api-key ...`."""

    help: str
    run: Callable[[Any, argparse.Namespace], Coroutine[Any, Any, None]]
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    # What the command reads, when it needs less than the whole service (ask for nothing it does not use).
    settings_type: type[BaseSettings] | None = None


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer of the service's topics in a Kafka group beside the service's own,
    mfaplane-<service>-<name> (mfaplane_contracts.topics.MORE_CONSUMER_GROUPS): it has its own offsets, so it keeps up,
    or falls behind, apart from the service's own consumer (consumer.py)."""

    name: str
    batch_handler: Callable[[Runtime], BatchHandler]


@dataclass
class ServiceSpec:
    name: str
    settings_type: type[ServiceSettings]
    migrations: Path | None = None
    consumes: tuple[Topic, ...] = ()
    handler: Callable[[Runtime], Handler] | None = None
    handles: tuple[type[EventPayload], ...] | None = None  # the event types the handler acts on (None: all)
    # Instead of (or beside) `handler`: the handler's work for a run of events at once; see consumer.py.
    batch_handler: Callable[[Runtime], BatchHandler] | None = None
    more_consumers: tuple[ConsumerGroup, ...] = ()  # of the same topics, each in a group of its own
    routers: list[APIRouter] = field(default_factory=list)
    background: Callable[[Runtime], list[Coroutine[Any, Any, None]]] = lambda runtime: []
    # Resources of the service's own (HTTP clients, key material): entered at start-up, each value
    # set as an attribute of app.state, and closed at shutdown.
    state: Callable[[Runtime], contextlib.AbstractAsyncContextManager[dict[str, Any]]] | None = None
    commands: dict[str, CliCommand] = field(default_factory=dict)
    # Request size limits of single routes (by path) that take more than MAX_REQUEST_BYTES.
    body_limits: dict[str, int] = field(default_factory=dict)
    # The services whose signed calls the API answers; empty: the API authenticates its own callers.
    callers: frozenset[str] = frozenset()
    # The OpenAPI document's description (Markdown): what spans operations, such as how they chain.
    description: str = ""
    # Completes the generated OpenAPI document in place, with what FastAPI's generator would spoil: it drops
    # every null, also those of example values.
    finish_openapi: Callable[[dict[str, Any]], None] | None = None

    def migration_dirs(self) -> list[Path]:
        return [db.EVENTING_MIGRATIONS] + ([self.migrations] if self.migrations else [])

    def consumers(self, runtime: Runtime) -> list[Consumer]:
        """Its consumers, those beside its own group's first: one starting for the first time copies the own
        group's offsets (consumer.py), which must be done before the own group consumes."""
        trust, retries = runtime.trust, runtime.settings.consumer_max_retries
        consumers = [Consumer(self.name, trust.kafka, trust.keys, runtime.pool, self.consumes, None, retries,
                              batch_handler=group.batch_handler(runtime), consumer_group=group.name)
                     for group in self.more_consumers]
        handler = self.handler(runtime) if self.handler else None
        batch_handler = self.batch_handler(runtime) if self.batch_handler else None
        if handler or batch_handler:
            consumers.append(Consumer(self.name, trust.kafka, trust.keys, runtime.pool, self.consumes, handler,
                                      retries, handles=self.handles, batch_handler=batch_handler))
        return consumers


async def _start_producer(kafka: KafkaSecurity) -> AIOKafkaProducer:
    """Waits for the broker rather than failing start-up: the relay keeps its backlog meanwhile."""
    while True:
        # A relay batch (RELAY_BATCH_SIZE events of 1 to 2 KB, signed) in a few produce requests, not dozens
        # of 16 KiB ones, each waiting for its acknowledgement.
        producer = AIOKafkaProducer(**kafka.client_options(), acks="all", linger_ms=5, enable_idempotence=False,
                                    max_batch_size=PRODUCE_BATCH_BYTES)
        try:
            await producer.start()
            return producer
        except Exception as error:  # noqa: BLE001 - aiokafka raises several types while the broker is down
            log.warning("broker not reachable yet", extra={"error": repr(error)})
            await producer.stop()
            await asyncio.sleep(BROKER_RETRY_SECONDS)


async def current_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]


def build_app(spec: ServiceSpec, settings: ServiceSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clock = clocks.from_setting(settings.mfaplane_fake_clock_file)
        trust = Trust.from_settings(spec.name, settings)
        app.state.call_verifier = CallVerifier(spec.name, spec.callers, trust.keys)
        metrics = asyncio.create_task(_MetricsServer.serving(settings), name="metrics")
        try:
            pool = await db.create_pool(settings.database_url, settings.database_schema)
        except db.DatabaseRefused as error:
            log.critical("database refused", extra={"error": str(error)})
            raise
        producer = await _start_producer(trust.kafka)
        runtime = Runtime(settings, clock, pool, EventStore(pool, clock), producer, trust)
        app.state.runtime = runtime
        extras = contextlib.AsyncExitStack()
        if spec.state is not None:
            for name, value in (await extras.enter_async_context(spec.state(runtime))).items():
                setattr(app.state, name, value)
        relay = OutboxRelay(pool, producer, spec.name, settings.relay_batch_size, trust.key)
        tasks = [metrics, asyncio.create_task(relay.run(), name="outbox-relay")]
        tasks += [asyncio.create_task(job) for job in spec.background(runtime)]
        consumers = spec.consumers(runtime)
        for consumer in consumers:
            await consumer.start()
        log.info("service started", extra={"port": settings.http_port})
        try:
            yield
        finally:
            for consumer in consumers:
                await consumer.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await extras.aclose()
            await producer.stop()
            await pool.close()

    return http_app(spec, settings.max_request_bytes, lifespan)


def http_app(spec: ServiceSpec, max_request_bytes: int, lifespan: Any = None) -> FastAPI:
    """The service's HTTP surface; without a lifespan it only serves to describe the API (OpenAPI)."""
    # A service only other services may call serves no API documentation either (`openapi` prints it).
    # FastAPI's own /docs and /redoc load their scripts from a CDN: a service serves its own pages, or none.
    hidden: dict[str, Any] = {"openapi_url": None} if spec.callers else {}
    app = FastAPI(title=f"mfaplane {spec.name}", version=API_VERSION, description=spec.description,
                  lifespan=lifespan, docs_url=None, redoc_url=None, **hidden)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes, route_limits=spec.body_limits)
    app.add_middleware(ResponseHeaders)  # outermost: the refusals of BodyLimit carry them too
    authenticated = [Depends(verified_call)] if spec.callers else []
    for router in spec.routers:
        app.include_router(router, responses=problems.ERROR_RESPONSES, dependencies=authenticated)
    app.add_api_route("/healthz", lambda: {"status": "alive"}, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", _readiness, methods=["GET"], include_in_schema=False)
    if spec.finish_openapi is not None:
        _finish_openapi(app, spec.finish_openapi)
    return app


def _finish_openapi(app: FastAPI, finish: Callable[[dict[str, Any]], None]) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()  # generated once, and kept by FastAPI: finished once
            finish(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to change its document


class _MetricsServer(uvicorn.Server):
    """GET /metrics on METRICS_PORT and nothing else, beside the API in the same loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the API's server takes SIGTERM; this one stops when the lifespan ends

    @classmethod
    async def serving(cls, settings: ServiceSettings) -> None:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route("/metrics", _metrics, methods=["GET"])
        await cls(uvicorn.Config(app, host=settings.http_host, port=settings.metrics_port, log_config=None,
                                 access_log=False, lifespan="off")).serve()


def openapi_document(spec: ServiceSpec) -> str:
    document = http_app(spec, ServiceSettings.model_fields["max_request_bytes"].default).openapi()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


async def _readiness(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await runtime.pool.fetchval("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["database"] = type(error).__name__
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await runtime.producer.client.fetch_all_metadata()
        checks["broker"] = "ok"
    except Exception as error:  # noqa: BLE001
        checks["broker"] = type(error).__name__
    ready = all(value == "ok" for value in checks.values())
    status = 200 if ready else 503
    return JSONResponse({"ready": ready, "checks": checks}, status_code=status,
                        headers=problems.with_retry_after(status, None))


def _metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def database_settings(spec: ServiceSpec) -> type[DatabaseSettings]:
    """DatabaseSettings with the service's own default schema."""
    schema = spec.settings_type.model_fields["database_schema"]
    return create_model(f"{spec.settings_type.__name__}Database", __base__=DatabaseSettings,
                        database_schema=(str, schema.default))


DATABASE_COMMANDS = ("migrate", "republish", "park-held")  # they need only the database's settings


async def _migrate(spec: ServiceSpec, settings: DatabaseSettings) -> None:
    applied = await db.migrate(settings.database_url, settings.database_schema, spec.migration_dirs())
    print(f"{spec.name}: {len(applied)} migration(s) applied")


async def _republish(spec: ServiceSpec, settings: DatabaseSettings, from_position: int) -> None:
    pool = await db.create_pool(settings.database_url, settings.database_schema)
    try:
        queued = await EventStore(pool, clocks.SystemClock()).republish(from_position)
        print(f"{spec.name}: {queued} event(s) queued for publishing again")
    finally:
        await pool.close()


async def _park_held(spec: ServiceSpec, settings: DatabaseSettings, topic: str, partition: int) -> None:
    """Parks the oldest held message of the partition in each of the service's consumer groups holding one."""
    pool = await db.create_pool(settings.database_url, settings.database_schema)
    try:
        parked = {group: await park_oldest_held(pool, topic, partition, group)
                  for group in ("", *(more.name for more in spec.more_consumers))}
    finally:
        await pool.close()
    if not any(parked.values()):
        sys.exit(f"{spec.name}: nothing is held on {topic} partition {partition}")
    for group, held in parked.items():
        if held is not None:
            print(f"{consumer_group_id(spec.name, group)}: parked event {held['event_id']} (offset {held['offset']}, "
                  f"{held['reason']}) in dead_letters; the messages behind it are released in turn")


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mfaplane_{spec.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service")
    sub.add_parser("migrate", help="apply database migrations (safe to rerun)")
    sub.add_parser("openapi", help="print the OpenAPI document of the service's HTTP API")
    republish = sub.add_parser("republish", help="publish stored events again, from a position on")
    republish.add_argument("--from-position", type=int, default=1)
    park = sub.add_parser("park-held", help="dead-letter the oldest message a partition holds (docs/operations.md)")
    park.add_argument("--topic", required=True)
    park.add_argument("--partition", type=int, required=True)
    for name, cli in spec.commands.items():
        command_parser = sub.add_parser(name, help=cli.help)
        for flags, options in cli.arguments:
            command_parser.add_argument(*flags, **options)
    args = parser.parse_args(argv)
    if args.command == "openapi":
        sys.stdout.write(openapi_document(spec))
        return
    command = spec.commands.get(args.command)
    settings: BaseSettings
    if args.command in DATABASE_COMMANDS:
        settings = load(database_settings(spec))
    else:
        settings = load(command.settings_type if command and command.settings_type else spec.settings_type)
    logs.configure(spec.name, getattr(settings, "log_level", "INFO"))
    if args.command == "serve":
        assert isinstance(settings, ServiceSettings)  # `serve` is no CliCommand: the spec's settings
        # proxy_headers off: uvicorn would otherwise take the client's address from X-Forwarded-For of
        # any peer on loopback. The gateway decides whom to believe (TRUSTED_PROXIES, rate_limits.py).
        uvicorn.run(build_app(spec, settings), host=settings.http_host, port=settings.http_port,
                    timeout_keep_alive=settings.http_keep_alive_seconds, log_config=None, access_log=False,
                    ssl_certfile=settings.http_tls_cert_file, ssl_keyfile=settings.http_tls_key_file,
                    proxy_headers=False)
    else:
        try:
            asyncio.run(_command(spec, settings, args))
        except db.DatabaseRefused as error:
            sys.exit(f"{spec.name} {args.command}: {error}")


async def _command(spec: ServiceSpec, settings: Any, args: argparse.Namespace) -> None:
    if args.command == "migrate":
        await _migrate(spec, settings)
    elif args.command == "republish":
        await _republish(spec, settings, args.from_position)
    elif args.command == "park-held":
        await _park_held(spec, settings, args.topic, args.partition)
    else:
        await spec.commands[args.command].run(settings, args)
