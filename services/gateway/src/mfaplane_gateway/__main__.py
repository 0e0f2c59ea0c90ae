import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mfaplane_chassis.service import ConsumerGroup, Runtime, ServiceSpec, main
from mfaplane_contracts.topics import EVENT_TOPICS
from mfaplane_gateway.api import (
    admin_api,
    api_docs,
    api_examples,
    enrollment_admin,
    principal_sessions,
    resources_api,
    users,
)
from mfaplane_gateway.audit import audit_api, audit_log, audit_verify
from mfaplane_gateway.bulk import bulk, login_names, user_import
from mfaplane_gateway.bulk.bulk import BulkWorker
from mfaplane_gateway.edge import (
    front_page,
    passwords_api,
    portal_account,
    reference_portals,
    sessions,
    sign_in,
)
from mfaplane_gateway.edge.auth import KeyCache
from mfaplane_gateway.edge.forwarding import Forwarder
from mfaplane_gateway.edge.rate_limits import RateLimits
from mfaplane_gateway.edge.sessions import Tokens
from mfaplane_gateway.read_models import projector, read_your_writes, registry, replay
from mfaplane_gateway.settings import GatewaySettings
from mfaplane_gateway.sso import oidc, saml
from mfaplane_gateway.sso.config import SSOConfig


@contextlib.asynccontextmanager
async def gateway_state(runtime: Runtime) -> AsyncIterator[dict[str, Any]]:
    s = runtime.settings
    await registry.refresh(runtime.pool)
    forwarder = Forwarder({"identity": s.identity_url, "mfa": s.mfa_url}, runtime.trust.call_signer("gateway"),
                          s.services_ca_file)
    tokens = Tokens(s.gateway_signing_key, s.challenge_ttl_seconds, s.session_ttl_seconds, s.admin_mfa_required)
    workers = [asyncio.create_task(job) for job in BulkWorker(runtime, forwarder).tasks()]
    try:
        yield {"forwarder": forwarder, "tokens": tokens, "key_cache": KeyCache(),
               "rate_limits": RateLimits.from_settings(s), "sso": SSOConfig.from_settings(s)}
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await forwarder.close()


ROUTERS = [users.router, bulk.router, enrollment_admin.users, enrollment_admin.admins, admin_api.router,
           principal_sessions.router, resources_api.router, login_names.router, user_import.router,
           sign_in.user_portal, sign_in.admin_portal, portal_account.router, audit_api.router,
           passwords_api.resets, passwords_api.user_portal, passwords_api.admin_portal, reference_portals.router,
           oidc.router, saml.router, api_docs.router, front_page.router]

SPEC = ServiceSpec(
    name="gateway",
    settings_type=GatewaySettings,
    migrations=Path(__file__).parent / "migrations",
    consumes=EVENT_TOPICS,
    # The read models in the gateway's own group; the audit log in a group of its own (projector.py).
    batch_handler=lambda runtime: functools.partial(projector.handle_batch, clock=runtime.clock),
    more_consumers=(ConsumerGroup("audit", lambda runtime: functools.partial(audit_log.handle_batch,
                                                                              clock=runtime.clock)),),
    routers=ROUTERS,
    description=api_docs.guide(ROUTERS),
    finish_openapi=functools.partial(api_docs.finish_document, ROUTERS, api_examples.EXAMPLES),
    background=lambda runtime: [registry.keep_current(runtime.pool), sessions.sweep_expired(runtime),
                                read_your_writes.sweep_expired_sets(runtime), audit_log.watch_awaiting(runtime.pool)],
    state=gateway_state,
    commands={"replay": replay.COMMAND, "verify-audit": audit_verify.COMMAND},
    body_limits={bulk.PATH: bulk.MAX_REQUEST_BYTES, login_names.PATH: login_names.MAX_REQUEST_BYTES,
                 login_names.CSV_PATH: login_names.MAX_REQUEST_BYTES,
                 user_import.PATH: user_import.MAX_REQUEST_BYTES},
)

if __name__ == "__main__":
    main(SPEC)
