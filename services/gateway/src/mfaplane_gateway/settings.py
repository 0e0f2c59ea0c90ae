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
