from pathlib import Path

from mfaplane_chassis.service import ServiceSpec, main
from mfaplane_identity import password_api
from mfaplane_identity.api import router
from mfaplane_identity.cli import CREATE_ADMIN, CREATE_API_KEY
from mfaplane_identity.settings import IdentitySettings

SPEC = ServiceSpec(
    name="identity",
    settings_type=IdentitySettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, password_api.router],
    callers=frozenset({"gateway"}),  # only the gateway may ask identity anything
    commands={"create-api-key": CREATE_API_KEY, "create-admin": CREATE_ADMIN},
)

if __name__ == "__main__":
    main(SPEC)
