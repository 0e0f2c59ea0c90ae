"""The embedded broker's CA and certificates (certificates.py), and the `pki` command that writes them."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mfaplane_devstack import ensure_pki
from mfaplane_devstack.__main__ import main
from mfaplane_devstack.stack import KAFKA_CLIENTS


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(kind).value


def test_the_layout_is_a_ca_the_broker_and_one_certificate_per_client(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", ["identity", "tests"])

    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == [
        "broker.crt", "broker.key", "ca.crt", "ca.key", "identity.crt", "identity.key", "tests.crt", "tests.key"]
    assert (pki.ca, pki.server_cert, pki.server_key) == (tmp_path / "pki" / "ca.crt", tmp_path / "pki" / "broker.crt",
                                                         tmp_path / "pki" / "broker.key")
    assert (pki.client_cert("tests"), pki.client_key("tests")) == (tmp_path / "pki" / "tests.crt",
                                                                   tmp_path / "pki" / "tests.key")
    for key in (tmp_path / "pki").glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key.name


def test_the_ca_is_a_p256_ca_and_issued_every_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["mfa"])
    ca = load(pki.ca)

    assert extension(ca, x509.BasicConstraints).ca is True
    assert extension(ca, x509.KeyUsage).key_cert_sign is True
    for cert in (ca, load(pki.server_cert), load(pki.client_cert("mfa"))):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
        cert.verify_directly_issued_by(ca)  # raises if not
    assert extension(load(pki.server_cert), x509.BasicConstraints).ca is False
    assert extension(load(pki.client_cert("mfa")), x509.BasicConstraints).ca is False


def test_the_broker_certificate_names_localhost_and_serves_tls(tmp_path: Path) -> None:
    server = load(ensure_pki(tmp_path, []).server_cert)

    san = extension(server, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(extension(server, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_a_client_certificate_names_its_client_and_serves_client_authentication_only(tmp_path: Path) -> None:
    client = load(ensure_pki(tmp_path, ["notifier"]).client_cert("notifier"))

    assert [a.value for a in client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["notifier"]
    assert list(extension(client, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        extension(client, x509.SubjectAlternativeName)


def test_a_second_run_reuses_everything_and_adds_only_new_clients(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["identity"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    ensure_pki(tmp_path, ["identity", "gateway"])

    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ["gateway.crt", "gateway.key"]
    load(pki.client_cert("gateway")).verify_directly_issued_by(load(pki.ca))


def test_a_reused_key_is_made_private_again(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["tests"])
    pki.client_key("tests").chmod(0o644)
    pki.ca_key.chmod(0o640)

    ensure_pki(tmp_path, ["tests"])

    assert pki.client_key("tests").stat().st_mode & 0o777 == 0o600
    assert pki.ca_key.stat().st_mode & 0o777 == 0o600


def test_a_new_ca_reissues_every_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["tests"])
    old_client = pki.client_cert("tests").read_bytes()
    pki.ca_key.unlink()

    ensure_pki(tmp_path, ["tests"])

    ca = load(pki.ca)
    assert pki.client_cert("tests").read_bytes() != old_client
    for cert in (pki.server_cert, pki.client_cert("tests")):
        load(cert).verify_directly_issued_by(ca)


def test_a_certificate_without_its_key_is_reissued(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["tests"])
    old = pki.client_cert("tests").read_bytes()
    pki.client_key("tests").unlink()

    ensure_pki(tmp_path, ["tests"])

    assert pki.client_cert("tests").read_bytes() != old and pki.client_key("tests").exists()


def test_more_broker_names_reissue_the_broker_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, [])
    ensure_pki(tmp_path, [], server_hosts=["kafka"])

    san = extension(load(pki.server_cert), x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "kafka"]


@pytest.mark.parametrize("name", ["../escape", "broker", "ca", "", "a b"])
def test_a_client_name_that_is_not_a_plain_file_name_or_is_taken_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        ensure_pki(tmp_path / "pki", [name])
    assert not (tmp_path / "escape.key").exists()


def test_the_pki_command_writes_the_certificates_of_every_kafka_client(tmp_path: Path) -> None:
    assert main(["pki", str(tmp_path / "pki"), "--host", "kafka"]) == 0

    names = {p.name for p in (tmp_path / "pki").iterdir()}
    assert {"ca.crt", "ca.key", "broker.crt", "broker.key"} <= names
    for client in ("identity", "mfa", "scheduler", "notifier", "gateway", "devstack", "tests"):
        assert {f"{client}.crt", f"{client}.key"} <= names
    assert set(KAFKA_CLIENTS) == {"identity", "mfa", "scheduler", "notifier", "gateway", "devstack", "tests"}
    san = extension(load(tmp_path / "pki" / "broker.crt"), x509.SubjectAlternativeName)
    assert "kafka" in san.get_values_for_type(x509.DNSName)
    assert not [p for p in (tmp_path / "pki").iterdir() if p.name.endswith(".tmp")]
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in (tmp_path / "pki").glob("*.key"))
