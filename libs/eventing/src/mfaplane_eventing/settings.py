"""Settings from the environment. A bad or missing variable stops start-up with its name.

Every setting can also be read from a file: `<NAME>_FILE` names a file whose content (without a
trailing newline) is the value, the convention of Kubernetes Secrets mounted as files and of compose
secrets. A file keeps a secret out of the process environment, which `/proc/<pid>/environ`, crash
reports and `kubectl describe` show. Setting both `<NAME>` and `<NAME>_FILE` is an error: which
one wins would be a guess.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
# Every secret committed to this repository (docker-compose.yml, the dev overlay) says what it is,
# in plain text or in base64 ("dev-only-" at the start of a value); anyone can read them.
DEVELOPMENT_SECRET_MARKERS = ("dev-only", base64.b64encode(b"dev-only-").decode())
# The ids of the service signing keys committed for the dev overlay (deploy/k8s/overlays/dev/signing-keys).
PUBLISHED_SERVICE_KEY_IDS = frozenset({
    "ed25519:731742a8455fe0f05770bf5a57e33715", "ed25519:495ea7a2fde146c90496e8c365899826",
    "ed25519:a46f888095f5c5c504dfdf1bce89a08c", "ed25519:88ad519b64d4aa8ac5718ad79da544d6",
    "ed25519:75874c395987f74f0d1fe47a81ac596f",
})


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Accepts the repository's published development secrets. Off, a service holding one refuses to
    # start: a challenge or session signed with a key from a public file would be anyone's.
    development_mode: bool = False

    @model_validator(mode="after")
    def _no_published_secret(self) -> _Settings:
        if self.development_mode:
            return self
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if not field.repr and isinstance(value, str) and any(m in value for m in DEVELOPMENT_SECRET_MARKERS):
                raise ValueError(f"{name.upper()} is a development secret published in this repository; "
                                 "set a secret of your own (DEVELOPMENT_MODE=true accepts it on a development "
                                 "machine)")
        return self


class KafkaSettings(_Settings):
    """How a client reaches Kafka (kafka_security.py)."""

    kafka_bootstrap_servers: str
    # How clients reach Kafka. SSL (TLS, and mutual TLS when a client certificate is given) is the
    # default: PLAINTEXT must be asked for by name, never fallen into.
    kafka_security_protocol: KafkaSecurityProtocol = "SSL"
    kafka_ssl_ca_file: str | None = None  # unset: the system's trusted CAs
    kafka_ssl_cert_file: str | None = None  # a client certificate (PEM) for mutual TLS, with its key
    kafka_ssl_key_file: str | None = None
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> KafkaSettings:
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (mutual TLS)")
        if self.kafka_security_protocol.startswith("SASL") and not (self.kafka_sasl_username
                                                                    and self.kafka_sasl_password):
            raise ValueError(f"{self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        return self


class DatabaseSettings(_Settings):
    """What a service's `migrate` and `republish` read: its database and nothing else, so that the
    migrations Job holds no key, no Kafka credential and no other secret."""

    database_url: str = Field(repr=False)
    database_schema: str
    log_level: str = "INFO"


class ServiceSettings(KafkaSettings, DatabaseSettings):
    """What every service reads. Services subclass it to add their own variables."""

    # This service's Ed25519 private key (PKCS#8 PEM): signs every event it publishes and every call it
    # makes to another service (service_auth.py, event_signing.py).
    service_signing_key: str = Field(repr=False)
    # The public keys of every service, {"service": ["base64 of the 32-byte key", ...]}; several per
    # service while keys rotate. Events and calls are trusted only under their owner's keys.
    service_public_keys: str
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # With both, the API port speaks HTTPS only (TLS 1.2 or later): identity and mfa, which the gateway
    # calls with passwords, TOTP secrets and recovery codes, and must be sure it is them that answer.
    http_tls_cert_file: str | None = None
    http_tls_key_file: str | None = None
    # /metrics only, apart from the API, so that a scraper allowed here reaches no command route.
    metrics_port: int = 9100
    # Longer than the idle timeout of whatever keeps connections to the service open (ingress-nginx:
    # 60 s; aiohttp, as the gateway forwards: 15 s), so that the client side closes an idle connection
    # first. A server that closes first can do it just as a request is sent on it, which then fails.
    http_keep_alive_seconds: int = 75
    relay_batch_size: int = 500
    consumer_max_retries: int = 5
    max_request_bytes: int = 64 * 1024
    mfaplane_fake_clock_file: str | None = None

    @model_validator(mode="after")
    def _tls_is_complete(self) -> ServiceSettings:
        if (self.http_tls_cert_file is None) != (self.http_tls_key_file is None):
            raise ValueError("HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE go together")
        return self

    @field_validator("service_signing_key")
    @classmethod
    def _is_a_service_key(cls, value: str) -> str:
        ServiceKey.from_pem(value)
        return value

    @model_validator(mode="after")
    def _signing_key_is_not_published(self) -> ServiceSettings:
        if (not self.development_mode
                and ServiceKey.from_pem(self.service_signing_key).key_id in PUBLISHED_SERVICE_KEY_IDS):
            raise ValueError("SERVICE_SIGNING_KEY is a development key published in this repository; generate "
                             "one of your own (DEVELOPMENT_MODE=true accepts it on a development machine)")
        return self

    @field_validator("service_public_keys")
    @classmethod
    def _are_public_keys(cls, value: str) -> str:
        TrustedKeys.from_json(value)
        return value


T = TypeVar("T", bound=BaseSettings)


def from_files(settings_type: type[BaseSettings], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The values of `settings_type`'s fields given as `<NAME>_FILE`."""
    values = {}
    for name in settings_type.model_fields:
        variable = name.upper()
        path = environ.get(f"{variable}_FILE")
        if path is None:
            continue
        if variable in environ:
            raise ValueError(f"{variable} and {variable}_FILE are both set; set one")
        try:
            values[name] = Path(path).read_text(encoding="utf-8").removesuffix("\n")
        except OSError as error:
            raise ValueError(f"{variable}_FILE: cannot read {path}: {error.strerror}") from None
    return values


def load(settings_type: type[T]) -> T:
    try:
        values: dict[str, Any] = from_files(settings_type)  # BaseSettings' keywords take Any
        return settings_type(**values)
    except ValueError as error:
        if not isinstance(error, ValidationError):
            print(f"configuration error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        for problem in error.errors():
            variable = "_".join(str(part) for part in problem["loc"]).upper() or "settings"
            print(f"configuration error: {variable}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
