import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mfaplane_chassis.service import Runtime, ServiceSpec, main
from mfaplane_contracts import mfa_api
from mfaplane_contracts.topics import IDENTITY_EVENTS
from mfaplane_mfa import identity_reactions
from mfaplane_mfa.commands_api import MAX_BATCH_BYTES, router
from mfaplane_mfa.enrollment_commands import EnrollmentCommands
from mfaplane_mfa.key_material import KeyMaterial
from mfaplane_mfa.settings import MFASettings


def enrollment_commands(runtime: Runtime) -> EnrollmentCommands:
    s = runtime.settings
    return EnrollmentCommands(runtime.store, runtime.pool, runtime.clock, KeyMaterial(s.key_vault()),
                              s.throttle_policy())


@contextlib.asynccontextmanager
async def mfa_state(runtime: Runtime) -> AsyncIterator[dict[str, Any]]:
    yield {"enrollment_commands": enrollment_commands(runtime)}


SPEC = ServiceSpec(
    name="mfa",
    settings_type=MFASettings,
    migrations=Path(__file__).parent / "migrations",
    consumes=(IDENTITY_EVENTS,),
    handler=lambda runtime: identity_reactions.handler(enrollment_commands(runtime)),
    handles=identity_reactions.HANDLES,
    routers=[router],
    callers=frozenset({"gateway"}),  # only the gateway may command an enrollment
    body_limits={mfa_api.BATCH.path: MAX_BATCH_BYTES},
    state=mfa_state,
)

if __name__ == "__main__":
    main(SPEC)
