"""How a service's Kafka clients authenticate: one place for the producer, faust's consumer and the
admin client, so no client of the service can connect with less than the others.

TLS verifies the broker against `KAFKA_SSL_CA_FILE` (or the system's CAs) and its host name; with a
client certificate it is mutual TLS, the broker's proof of which service connects (Strimzi's
`tls` KafkaUser). SASL SCRAM-SHA-512 (Strimzi's `scram-sha-512` KafkaUser), SCRAM-SHA-256 and PLAIN
give a user name and password instead, over TLS with SASL_SSL. PLAINTEXT and SASL_PLAINTEXT send
everything in clear and exist for brokers on a trusted loopback only; a service says so at start-up.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import faust.auth
from aiokafka.helpers import create_ssl_context

from mfaplane_eventing.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSecurity:
    bootstrap_servers: str
    protocol: str
    ssl_context: ssl.SSLContext | None
    sasl_mechanism: str
    sasl_username: str | None
    sasl_password: str | None = field(repr=False)

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaSecurity:
        protocol = settings.kafka_security_protocol
        context = None
        if protocol.endswith("SSL"):
            # create_ssl_context verifies the broker's certificate and host name (CERT_REQUIRED).
            context = create_ssl_context(cafile=settings.kafka_ssl_ca_file, certfile=settings.kafka_ssl_cert_file,
                                         keyfile=settings.kafka_ssl_key_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        else:
            log.warning("Kafka traffic is not encrypted", extra={"kafka_security_protocol": protocol})
        return cls(settings.kafka_bootstrap_servers, protocol, context, settings.kafka_sasl_mechanism,
                   settings.kafka_sasl_username, settings.kafka_sasl_password)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def faust_credentials(self) -> faust.auth.Credentials | None:
        """faust's form of the same settings (it hands them to aiokafka as `client_options` does)."""
        if self.uses_sasl:
            return faust.auth.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                              ssl_context=self.ssl_context, mechanism=self.sasl_mechanism)
        if self.ssl_context is not None:
            return faust.auth.SSLCredentials(self.ssl_context)
        return None

    def faust_broker(self) -> list[str]:
        return [f"kafka://{server}" for server in self.bootstrap_servers.split(",")]
