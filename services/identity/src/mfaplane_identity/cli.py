"""Operator commands of the identity service."""

from __future__ import annotations

import argparse
import uuid

from mfaplane_eventing import db
from mfaplane_eventing.clock import SystemClock
from mfaplane_eventing.event_store import Cause, EventStore
from mfaplane_eventing.service import CliCommand
from mfaplane_identity.api import issue_api_key


async def _create_api_key(settings, args: argparse.Namespace) -> None:
    pool = await db.create_pool(settings.database_url, settings.database_schema)
    try:
        cause = Cause(actor="operator:cli", correlation_id=uuid.uuid4(), command_id=uuid.uuid4())
        issued = await issue_api_key(EventStore(pool, SystemClock()), cause, args.role, args.name)
        print(issued.key)
    finally:
        await pool.close()


CREATE_API_KEY = CliCommand(
    help="create an API key and print it once (bootstraps the first admin key)",
    run=_create_api_key,
    arguments=(
        (("--role",), {"required": True, "choices": ["admin", "auditor", "portal", "system_agent"]}),
        (("--name",), {"required": True}),
    ),
)
