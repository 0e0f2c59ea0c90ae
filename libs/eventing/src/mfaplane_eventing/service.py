"""How every service process starts: `python -m mfaplane_<service> {serve,migrate,republish}`.

`serve` runs one asyncio loop holding the HTTP API (uvicorn), the outbox relay, the consumer (if the
service consumes) and the service's own background loops. SIGTERM (uvicorn's) stops the HTTP
server, then the consumer finishes its message and commits offsets, then everything else stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.topics import Topic
from mfaplane_eventing import clock as clocks
from mfaplane_eventing import db, logs, problems
from mfaplane_eventing.body_limit import BodyLimit
from mfaplane_eventing.consumer import BatchHandler, Consumer, Handler
from mfaplane_eventing.event_store import EventStore
from mfaplane_eventing.outbox_relay import OutboxRelay
from mfaplane_eventing.settings import ServiceSettings, load

log = logging.getLogger(__name__)
API_VERSION = "1.0.0"
READY_TIMEOUT_SECONDS = 2.0
BROKER_RETRY_SECONDS = 1.0


@dataclass
class Runtime:
    """What a running service has at hand: its settings, clock, database and event store."""

    settings: Any
    clock: clocks.Clock
    pool: asyncpg.Pool
    store: EventStore
    producer: AIOKafkaProducer


@dataclass(frozen=True)
class CliCommand:
    """An operator command of a service, e.g. `python -m mfaplane_identity create-api-key ...`."""

    help: str
    run: Callable[[Any, argparse.Namespace], Coroutine[Any, Any, None]]
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()


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
    routers: list[APIRouter] = field(default_factory=list)
    background: Callable[[Runtime], list[Coroutine[Any, Any, None]]] = lambda runtime: []
    # Resources of the service's own (HTTP clients, key material): entered at start-up, each value
    # set as an attribute of app.state, and closed at shutdown.
    state: Callable[[Runtime], contextlib.AbstractAsyncContextManager[dict[str, Any]]] | None = None
    commands: dict[str, CliCommand] = field(default_factory=dict)
    # Request size limits of single routes (by path) that take more than MAX_REQUEST_BYTES.
    body_limits: dict[str, int] = field(default_factory=dict)

    def migration_dirs(self) -> list[Path]:
        return [db.EVENTING_MIGRATIONS] + ([self.migrations] if self.migrations else [])


async def _start_producer(bootstrap: str) -> AIOKafkaProducer:
    """Waits for the broker rather than failing start-up: the relay keeps its backlog meanwhile."""
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=False)
        try:
            await producer.start()
            return producer
        except Exception as error:  # noqa: BLE001 - aiokafka raises several types while the broker is down
            log.warning("broker not reachable yet", extra={"error": repr(error)})
            await producer.stop()
            await asyncio.sleep(BROKER_RETRY_SECONDS)


async def current_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]


def build_app(spec: ServiceSpec, settings: ServiceSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clock = clocks.from_setting(settings.mfaplane_fake_clock_file)
        pool = await db.create_pool(settings.database_url, settings.database_schema)
        producer = await _start_producer(settings.kafka_bootstrap_servers)
        runtime = Runtime(settings, clock, pool, EventStore(pool, clock), producer)
        app.state.runtime = runtime
        extras = contextlib.AsyncExitStack()
        if spec.state is not None:
            for name, value in (await extras.enter_async_context(spec.state(runtime))).items():
                setattr(app.state, name, value)
        relay = OutboxRelay(pool, producer, spec.name, settings.relay_batch_size)
        tasks = [asyncio.create_task(relay.run(), name="outbox-relay")]
        tasks += [asyncio.create_task(job) for job in spec.background(runtime)]
        consumer = None
        handler = spec.handler(runtime) if spec.handler else None
        batch_handler = spec.batch_handler(runtime) if spec.batch_handler else None
        if handler or batch_handler:
            consumer = Consumer(spec.name, settings.kafka_bootstrap_servers, pool, spec.consumes, handler,
                                settings.consumer_max_retries, handles=spec.handles, batch_handler=batch_handler)
            await consumer.start()
        log.info("service started", extra={"port": settings.http_port})
        try:
            yield
        finally:
            if consumer is not None:
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
    app = FastAPI(title=f"mfaplane {spec.name}", version=API_VERSION, lifespan=lifespan)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes, route_limits=spec.body_limits)
    for router in spec.routers:
        app.include_router(router, responses=problems.ERROR_RESPONSES)
    app.add_api_route("/healthz", lambda: {"status": "alive"}, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", _readiness, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    return app


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
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _migrate(spec: ServiceSpec, settings: ServiceSettings) -> None:
    applied = await db.migrate(settings.database_url, settings.database_schema, spec.migration_dirs())
    print(f"{spec.name}: {len(applied)} migration(s) applied")


async def _republish(spec: ServiceSpec, settings: ServiceSettings, from_position: int) -> None:
    pool = await db.create_pool(settings.database_url, settings.database_schema)
    try:
        queued = await EventStore(pool, clocks.SystemClock()).republish(from_position)
        print(f"{spec.name}: {queued} event(s) queued for publishing again")
    finally:
        await pool.close()


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mfaplane_{spec.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service")
    sub.add_parser("migrate", help="apply database migrations (safe to rerun)")
    sub.add_parser("openapi", help="print the OpenAPI document of the service's HTTP API")
    republish = sub.add_parser("republish", help="publish stored events again, from a position on")
    republish.add_argument("--from-position", type=int, default=1)
    for name, command in spec.commands.items():
        command_parser = sub.add_parser(name, help=command.help)
        for flags, options in command.arguments:
            command_parser.add_argument(*flags, **options)
    args = parser.parse_args(argv)
    if args.command == "openapi":
        sys.stdout.write(openapi_document(spec))
        return
    settings = load(spec.settings_type)
    logs.configure(spec.name, settings.log_level)
    if args.command == "serve":
        uvicorn.run(build_app(spec, settings), host=settings.http_host, port=settings.http_port,
                    timeout_keep_alive=settings.http_keep_alive_seconds, log_config=None, access_log=False)
    elif args.command == "migrate":
        asyncio.run(_migrate(spec, settings))
    elif args.command == "republish":
        asyncio.run(_republish(spec, settings, args.from_position))
    else:
        asyncio.run(spec.commands[args.command].run(settings, args))
