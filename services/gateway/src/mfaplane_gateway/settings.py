import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import NoDecode

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
    # The audit export serves a record once its place in the story (story_at) is this long past, so that
    # events still in flight take their place before a reader passes it (audit_order.py). Above the
    # usual delay from an event to its place in the log (mfaplane_audit_lag_seconds).
    audit_settle_seconds: float = Field(default=60, ge=0, le=3600)
    # Signs sign-in challenges and session tokens; at least 32 random bytes, from a Secret.
    gateway_signing_key: str = Field(min_length=32, repr=False)
    challenge_ttl_seconds: int = 300
    session_ttl_seconds: int = 8 * 3600
    # Every admin signs in to the admin console with a code: one without MFA set up must set it up first,
    # and the admin API refuses admin sessions opened without a code. False only to bootstrap the first
    # admin where no admin can set up MFA yet (docs/operations.md), then back to true.
    admin_mfa_required: bool = True
    # Minting an API key needs an admin session whose code was checked at most this long ago (step-up).
    step_up_seconds: int = Field(default=300, ge=30, le=3600)
    # A `portal` role API key handed to the reference portals at /admin and /portal (their config.json).
    # It is PUBLIC: every browser that loads those pages can read it. That is acceptable only because the
    # portal role allows nothing but the public sign-in flows; a production portal keeps its key on its
    # own server. Unset: the reference portals are served but say they are not configured.
    reference_portal_api_key: str | None = Field(default=None, repr=False)
    # Token buckets on the public sign-in routes of both portals (rate_limits.py), in requests per minute,
    # a minute's worth allowed at once. Per gateway process: N replicas let through N times as much.
    # The password step; overall about what identity hashes per second (ARGON2_*) over the gateway replicas.
    sign_in_per_minute_per_source: int = Field(default=20, ge=1)
    sign_in_per_minute: int = Field(default=600, ge=1)
    # verify, dismiss-prompt, setup/begin and setup/confirm: no hashing, and a person takes two or three.
    challenge_per_minute_per_source: int = Field(default=60, ge=1)
    challenge_per_minute: int = Field(default=3000, ge=1)
    # The gateway's address as browsers and applications reach it (https://mfa.example.com): the OpenID
    # Connect issuer and the SAML entity id, which applications pin. Unset: SSO sign-in is off (503).
    public_url: str | None = None
    # The keys that sign ID tokens and SAML assertions: a PEM file of RSA private keys, from a Secret.
    # The first signs; all are published (JWKS, SAML metadata), so a new key goes first and the old one
    # stays after it until applications have fetched the new one (docs/sso.md).
    sso_signing_keys_file: str | None = None
    # The proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client; empty: the socket's peer
    # is the client. Behind an ingress controller: the addresses of its pods (docs/operations.md).
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()

    @field_validator("identity_url", "mfa_url", "public_url")
    @classmethod
    def _https_unless_loopback(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            return url.rstrip("/")
        raise ValueError("must be an https:// URL (http:// only to a loopback address)")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
