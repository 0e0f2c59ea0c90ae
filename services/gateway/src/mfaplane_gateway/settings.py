import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from mfaplane_eventing.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    database_schema: str = "gateway"
    # https:// (the calls carry passwords and TOTP secrets, and the answers decide sign-ins); http://
    # only to a loopback address.
    identity_url: str
    mfa_url: str
    # The CA that issued identity's and mfa's certificates (unset: the system's CAs).
    services_ca_file: str | None = None
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

    @field_validator("identity_url", "mfa_url")
    @classmethod
    def _https_unless_loopback(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            return url
        raise ValueError("must be an https:// URL (http:// only to a loopback address)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
