"""Operator commands of the identity service: the first admin and the first API keys.

They run with the service's own database access (inside a running identity pod), so they are for
bootstrapping and automation by whoever operates the deployment; through the API, making an admin
or a key needs an admin session stepped up with a code (gateway auth.py).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import get_args

from mfaplane_chassis.service import CliCommand
from mfaplane_contracts.identity_api import NewApiKey, NewPrincipal
from mfaplane_contracts.identity_events import ApiRole
from mfaplane_eventing import clock, db
from mfaplane_eventing.event_store import Cause, EventStore
from mfaplane_identity import account, api_keys
from mfaplane_identity.api import create_principal, issue_api_key, new_password_hash, passwords_for


@asynccontextmanager
async def _store(settings) -> AsyncIterator[EventStore]:
    """The event store, on the services' clock (so that a key's expiry is measured as identity measures it)."""
    pool = await db.create_pool(settings.database_url, settings.database_schema)
    try:
        yield EventStore(pool, clock.from_setting(settings.mfaplane_fake_clock_file))
    finally:
        await pool.close()


def _cause() -> Cause:
    return Cause(actor="operator:cli", correlation_id=uuid.uuid4(), command_id=uuid.uuid4())


async def _create_api_key(settings, args: argparse.Namespace) -> None:
    body = NewApiKey(role=args.role, name=args.name, expires_in_days=args.expires_in_days, system_id=args.system_id)
    async with _store(settings) as store:
        print((await issue_api_key(store, _cause(), body, store.clock.now())).key)


async def _create_admin(settings, args: argparse.Namespace) -> None:
    # The password from standard input, never from the command line, which other processes can read.
    body = NewPrincipal(email=args.email, name=args.name, password=sys.stdin.readline().rstrip("\n"))
    password_hash = await new_password_hash(passwords_for(settings), body)
    async with _store(settings) as store:
        created = await create_principal(store, _cause(), body, "admin", account.create_admin, password_hash)
        print(created.aggregate_id)


CREATE_API_KEY = CliCommand(
    help="create an API key and print it once (bootstraps the first admin key)",
    run=_create_api_key,
    arguments=(
        (("--role",), {"required": True, "choices": list(get_args(ApiRole))}),
        (("--name",), {"required": True}),
        (("--expires-in-days",), {"type": int, "default": api_keys.DEFAULT_LIFETIME.days,
                                  "help": f"1 to {api_keys.MAX_LIFETIME.days} (default: %(default)s)"}),
        (("--system-id",), {"type": uuid.UUID,
                            "help": "a system_agent or sso_client key's system (required for those roles)"}),
    ),
)


CREATE_ADMIN = CliCommand(
    help="create an admin, the password read from standard input, and print its id (bootstraps the first "
         "admin, who sets up MFA at their first sign-in to the admin console)",
    run=_create_admin,
    arguments=((("--email",), {"required": True}), (("--name",), {"required": True})),
)
