"""Settings: every one can come from a file, secrets never show, and bad ones stop start-up with a name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mfaplane_eventing.kafka_security import KafkaSecurity
from mfaplane_eventing.service_keys import ServiceKey
from mfaplane_eventing.settings import KafkaSettings, ServiceSettings, from_files

KEY = ServiceKey.generate()
BASE = {"DATABASE_URL": "postgresql://app:pw@db/app", "DATABASE_SCHEMA": "s", "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
        "SERVICE_PUBLIC_KEYS": json.dumps({"gateway": [KEY.public_base64()]})}


def test_a_secret_is_read_from_its_file_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(KEY.private_pem())
    loaded = subprocess.run(
        [sys.executable, "-c", "from mfaplane_eventing.settings import ServiceSettings, load; import sys; "
         "s = load(ServiceSettings); print(repr(s)); print(s.service_signing_key == open(sys.argv[1]).read().rstrip())",
         str(tmp_path / "key.pem")],
        env={**BASE, "SERVICE_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    shown, same = loaded.stdout.splitlines()
    assert same == "True"
    assert "PRIVATE KEY" not in shown and "pw@db" not in shown


def test_a_value_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(KEY.private_pem())
    environ = {"SERVICE_SIGNING_KEY": KEY.private_pem(), "SERVICE_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}
    with pytest.raises(ValueError, match="SERVICE_SIGNING_KEY and SERVICE_SIGNING_KEY_FILE are both set"):
        from_files(ServiceSettings, environ)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD_FILE: cannot read"):
        from_files(ServiceSettings, {"KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(("env", "message"), [
    ({"SERVICE_SIGNING_KEY": "not a key"}, "SERVICE_SIGNING_KEY: Value error, SERVICE_SIGNING_KEY is not"),
    ({"SERVICE_SIGNING_KEY": KEY.private_pem(), "SERVICE_PUBLIC_KEYS": "{}"}, "SERVICE_PUBLIC_KEYS must be"),
    ({"SERVICE_SIGNING_KEY": KEY.private_pem(), "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"SERVICE_SIGNING_KEY": KEY.private_pem(), "KAFKA_SSL_CERT_FILE": "/c.pem"}, "go together (mutual TLS)"),
    ({"SERVICE_SIGNING_KEY": KEY.private_pem(), "HTTP_TLS_CERT_FILE": "/c.pem"},
     "HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE go together"),
])
def test_bad_security_settings_stop_start_up_with_their_name_and_no_value(env: dict, message: str) -> None:
    done = subprocess.run([sys.executable, "-c", "from mfaplane_eventing.settings import ServiceSettings, load; "
                           "load(ServiceSettings)"], env={**BASE, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "not a key" not in done.stderr.replace("SERVICE_SIGNING_KEY is not", "")


def test_tls_is_the_default_and_verifies_the_broker() -> None:
    security = KafkaSecurity.from_settings(KafkaSettings(kafka_bootstrap_servers="k:9093"))
    options = security.client_options()
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].check_hostname and options["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_sasl_scram_reaches_aiokafka_and_faust_alike() -> None:
    settings = KafkaSettings(kafka_bootstrap_servers="k:9093", kafka_security_protocol="SASL_SSL",
                             kafka_sasl_username="mfa", kafka_sasl_password="s3cret")
    security = KafkaSecurity.from_settings(settings)
    options = security.client_options()
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "mfa", "s3cret")
    credentials = security.faust_credentials()
    assert (credentials.protocol.value, credentials.mechanism.value, credentials.username) == \
        ("SASL_SSL", "SCRAM-SHA-512", "mfa")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(credentials)
