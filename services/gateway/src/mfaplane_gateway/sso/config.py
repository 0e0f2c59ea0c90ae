"""What both identity-provider protocols share: the gateway's public address and signing keys, and the
proof of a finished sign-in that each protocol turns into its own statement (an ID token, an assertion).

How strongly the user was authenticated is said the same way in both: the REFEDS assurance profiles,
`https://refeds.org/profile/mfa` after a password and a code, `https://refeds.org/profile/sfa` after a
password alone (OpenID Connect's `acr`, SAML's AuthnContextClassRef), and in OpenID Connect also by
RFC 8176 method names (`amr`: `pwd`, and `otp` and `mfa` after a code).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Request

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.sso.signing_keys import SigningKeys

MFA = "https://refeds.org/profile/mfa"
SINGLE_FACTOR = "https://refeds.org/profile/sfa"


@dataclass(frozen=True)
class SSOConfig:
    issuer: str  # PUBLIC_URL
    keys: SigningKeys

    def sign_in_page(self, token: str) -> str:
        return f"{self.issuer}/portal/?sign_in={token}"

    @classmethod
    def from_settings(cls, settings: Any) -> SSOConfig | None:
        if not (settings.public_url and settings.sso_signing_keys_file):
            return None
        keys = SigningKeys.from_file(settings.sso_signing_keys_file)
        # Every key is in the JWKS: with a published one, anyone could sign ID tokens applications accept.
        if keys.any_published and not settings.development_mode:
            raise ValueError("SSO_SIGNING_KEYS_FILE holds a development key published in this repository; generate "
                             "one of your own (DEVELOPMENT_MODE=true accepts it on a development machine)")
        return cls(settings.public_url, keys)


async def _config(request: Request) -> SSOConfig:
    config = request.app.state.sso
    if config is None:
        raise not_configured()
    return config


def not_configured() -> Rejected:
    return Rejected("sso_not_configured", "Single sign-on is off here: PUBLIC_URL and SSO_SIGNING_KEYS_FILE are not "
                    "both set.", Refusal.NOT_READY)


SSODep = Annotated[SSOConfig, Depends(_config)]


@dataclass(frozen=True)
class SignInProof:
    """Who signed in, when (seconds since the epoch, by the wall clock the application checks tokens
    with), and whether a code was checked on the way."""

    ACR_VALUES: ClassVar[tuple[str, ...]] = (MFA, SINGLE_FACTOR)
    subject: str
    email: str
    name: str
    mfa_used: bool
    auth_time: int

    @classmethod
    def now(cls, subject: str, email: str, name: str, mfa_used: bool) -> SignInProof:
        return cls(subject, email, name, mfa_used, int(time.time()))

    @property
    def acr(self) -> str:
        return MFA if self.mfa_used else SINGLE_FACTOR

    @property
    def amr(self) -> tuple[str, ...]:
        return ("pwd", "otp", "mfa") if self.mfa_used else ("pwd",)

    @property
    def claims(self) -> dict[str, str]:
        return {"sub": self.subject, "email": self.email, "name": self.name}
