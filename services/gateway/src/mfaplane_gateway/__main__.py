import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mfaplane_contracts.topics import EVENT_TOPICS
from mfaplane_eventing.service import Runtime, ServiceSpec, main
from mfaplane_gateway import projector
from mfaplane_gateway.api import router
from mfaplane_gateway.forwarding import Forwarder
from mfaplane_gateway.settings import GatewaySettings


@contextlib.asynccontextmanager
async def gateway_state(runtime: Runtime) -> AsyncIterator[dict[str, Any]]:
    forwarder = Forwarder({"identity": runtime.settings.identity_url, "mfa": runtime.settings.mfa_url})
    try:
        yield {"forwarder": forwarder}
    finally:
        await forwarder.close()


SPEC = ServiceSpec(
    name="gateway",
    settings_type=GatewaySettings,
    migrations=Path(__file__).parent / "migrations",
    consumes=EVENT_TOPICS,
    handler=lambda runtime: projector.handle,
    routers=[router],
    state=gateway_state,
)

if __name__ == "__main__":
    main(SPEC)
