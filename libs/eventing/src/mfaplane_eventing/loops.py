"""The background loops of a service (outbox relay, timers, mail, bulk work) and how they survive.

A loop task that ends by an exception ends silently: asyncio keeps the exception on the task and
the service goes on answering HTTP and looking healthy while its outbox, timers or mail pile up.
So every loop runs its step through `repeat`, which outlives whatever one step raises: the expected
failures (the database or the broker away) are logged as a warning, anything else with its
traceback as an error, and the step runs again after a pause that grows while failures repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

EXPECTED_FAILURES = (OSError, KafkaError, asyncpg.PostgresError, asyncpg.InterfaceError)
BACKOFF_SECONDS = (0.2, 5.0)


async def repeat(what: str, step: Callable[[], Awaitable[bool]], idle_seconds: float) -> None:
    """Runs `step` forever: at once again while it reports work done (True), after `idle_seconds`
    when it reports none (False), after the back-off when it fails."""
    backoff = BACKOFF_SECONDS[0]
    while True:
        try:
            busy = await step()
        except EXPECTED_FAILURES as error:
            log.warning(f"{what} failed, retrying", extra={"error": repr(error), "backoff": backoff})
        except Exception as error:  # noqa: BLE001 - a loop that died would stop the service's work unseen
            log.exception(f"{what} failed unexpectedly, retrying", extra={"error": repr(error), "backoff": backoff})
        else:
            backoff = BACKOFF_SECONDS[0]
            if not busy:
                await asyncio.sleep(idle_seconds)
            continue
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_SECONDS[1])
