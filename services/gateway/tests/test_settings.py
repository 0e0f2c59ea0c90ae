"""The gateway's calls to identity and mfa go over HTTPS: a plain-HTTP URL is refused at start-up,
except to a loopback address. No proxy is trusted with the client's address unless configured."""

from __future__ import annotations

import ipaddress
import json

import pytest
from pydantic import ValidationError

from mfaplane_eventing.service_keys import ServiceKey
from mfaplane_gateway.settings import GatewaySettings

KEY = ServiceKey.generate()
REQUIRED = {"database_url": "postgresql://db/app", "kafka_bootstrap_servers": "k:9093", "gateway_signing_key": "x" * 32,
            "service_signing_key": KEY.private_pem(),
            "service_public_keys": json.dumps({"gateway": [KEY.public_base64()]})}


@pytest.mark.parametrize("url", ["https://mfaplane-identity:8000", "http://127.0.0.1:8001", "http://[::1]:8001",
                                 "http://localhost:8001"])
def test_https_or_loopback_is_accepted(url: str) -> None:
    assert GatewaySettings(**REQUIRED, identity_url=url, mfa_url=url).identity_url == url


@pytest.mark.parametrize("url", ["http://mfaplane-identity:8000", "http://10.0.0.7:8000", "ftp://identity",
                                 "identity:8000"])
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        GatewaySettings(**REQUIRED, identity_url=url, mfa_url="https://mfaplane-mfa:8000")


def test_no_proxy_is_trusted_unless_configured_and_the_setting_is_comma_separated_networks() -> None:
    loopback = {"identity_url": "http://127.0.0.1:8001", "mfa_url": "http://127.0.0.1:8002"}
    assert GatewaySettings(**REQUIRED, **loopback).trusted_proxies == ()
    configured = GatewaySettings(**REQUIRED, **loopback, trusted_proxies="10.0.0.0/8, fd00::/8")
    assert configured.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    with pytest.raises(ValidationError, match="trusted_proxies"):
        GatewaySettings(**REQUIRED, **loopback, trusted_proxies="ingress-nginx")
