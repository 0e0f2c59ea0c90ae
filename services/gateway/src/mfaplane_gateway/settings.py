from pydantic import Field

from mfaplane_eventing.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    database_schema: str = "gateway"
    identity_url: str
    mfa_url: str
    read_your_writes_timeout_seconds: float = 5.0
    # Signs sign-in challenges and session tokens; at least 32 random bytes, from a Secret.
    gateway_signing_key: str = Field(min_length=32, repr=False)
    challenge_ttl_seconds: int = 300
    session_ttl_seconds: int = 8 * 3600
    # A `portal` role API key handed to the reference portals at /admin and /portal (their config.json).
    # It is PUBLIC: every browser that loads those pages can read it. That is acceptable only because the
    # portal role allows nothing but the public sign-in flows; a production portal keeps its key on its
    # own server. Unset: the reference portals are served but say they are not configured.
    reference_portal_api_key: str | None = Field(default=None, repr=False)
