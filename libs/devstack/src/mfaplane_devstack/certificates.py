"""A private certificate authority for the embedded broker's mutual TLS and the services' HTTPS,
made once per data folder.

`ensure_pki(directory, clients)` writes (and later reuses) this layout, which the stack, the
`pki` command of `python -m mfaplane_devstack` and docker-compose rely on:

    ca.crt  ca.key              the CA (ECDSA P-256, CA:TRUE, 10 years)
    broker.crt  broker.key      the broker's TLS terminator (SAN: DNS localhost, IP 127.0.0.1)
    <client>.crt  <client>.key  one per client (CN = its name, extended key usage clientAuth)
    <service>-api.crt  .key     the HTTPS API of identity and mfa, which the gateway calls (SAN:
                                localhost, 127.0.0.1 and the names given for it)

Keys are PEM (PKCS#8, unencrypted) and mode 0600. A file missing, expired (or about to), or no
longer issued by the CA on disk is made again; a new CA (when ca.crt or ca.key is missing) makes
every certificate again. Each file is written to a temporary name and renamed, so a process never
reads half a file.

This CA exists for development and tests only: in production, Kafka clients trust the Kafka cluster's
CA (KAFKA_SSL_CA_FILE) and the gateway the CA that issued identity's and mfa's certificates
(SERVICES_CA_FILE).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=825)
RENEW_BEFORE = datetime.timedelta(days=30)  # a certificate this close to its end is made again
SERVER_NAME = "broker"
SERVER_HOSTS = ("localhost", "127.0.0.1")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Pki:
    """Where the files of one PKI folder are (see the module docstring for the layout)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / f"{SERVER_NAME}.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / f"{SERVER_NAME}.key"

    def client_cert(self, name: str) -> Path:
        return self.directory / f"{_client_name(name)}.crt"

    def client_key(self, name: str) -> Path:
        return self.directory / f"{_client_name(name)}.key"

    def has_client(self, name: str) -> bool:
        return self.client_cert(name).exists() and self.client_key(name).exists()

    def api_cert(self, service: str) -> Path:
        return self.directory / f"{_client_name(service)}-api.crt"

    def api_key(self, service: str) -> Path:
        return self.directory / f"{_client_name(service)}-api.key"


def ensure_pki(directory: Path, clients: Iterable[str], *, server_hosts: Iterable[str] = (),
               apis: Mapping[str, Iterable[str]] | None = None) -> Pki:
    """Make what is missing (or stale) of the CA, the broker's certificate, each client's and each API's.

    `server_hosts` adds names (or IP addresses) to the broker certificate's SAN, besides localhost
    and 127.0.0.1: e.g. "kafka", the broker's host name in docker-compose. `apis` maps a service to
    the names its HTTPS certificate adds the same way (e.g. {"identity": ["identity"]}).
    """
    pki = Pki(Path(directory).absolute())
    clients = [_client_name(name) for name in clients]
    hosts = list(dict.fromkeys([*SERVER_HOSTS, *server_hosts]))
    if SERVER_NAME in clients or "ca" in clients:
        raise ValueError(f"a client cannot be named {SERVER_NAME!r} or 'ca': those files are taken")
    pki.directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_cert = _read_cert(pki.ca)
    ca_key = _read_key(pki.ca_key)
    if ca_cert is None or ca_key is None or not _current(ca_cert, now) or ca_cert.public_key() != ca_key.public_key():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write_key(pki.ca_key, ca_key)
        write_file(pki.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)

    _ensure_server(pki.server_cert, pki.server_key, SERVER_NAME, hosts, ca_cert, ca_key, now)
    for service, names in (apis or {}).items():
        api_hosts = list(dict.fromkeys([*SERVER_HOSTS, *names]))
        _ensure_server(pki.api_cert(service), pki.api_key(service), service, api_hosts, ca_cert, ca_key, now)
    for name in clients:
        if not _issued_by(_read_cert(pki.client_cert(name)), ca_cert, now, pki.client_key(name)):
            _issue(pki.client_cert(name), pki.client_key(name), ca_cert, ca_key, now, _client_extensions(), name)
    for key in pki.directory.glob("*.key"):
        key.chmod(0o600)  # also a reused key whose mode was changed
    return pki


def _ensure_server(cert: Path, key: Path, name: str, hosts: list[str], ca_cert: x509.Certificate,
                   ca_key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> None:
    if not (_issued_by(_read_cert(cert), ca_cert, now, key) and _names_hosts(_read_cert(cert), hosts)):
        _issue(cert, key, ca_cert, ca_key, now, _server_extensions(hosts), name)


def _client_name(name: str) -> str:
    if not _CLIENT_NAME.fullmatch(name):
        raise ValueError(f"not a usable client name: {name!r} (letters, digits, '.', '_', '-')")
    return name


# -- reading -------------------------------------------------------------------------------------


def _read_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _current(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate | None, ca: x509.Certificate, now: datetime.datetime, key_path: Path) -> bool:
    """Whether `cert` is current, signed by `ca`, and its key file holds its key."""
    if cert is None or not _current(cert, now):
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    key = _read_key(key_path)
    return key is not None and key.public_key() == cert.public_key()


def _names_hosts(cert: x509.Certificate | None, hosts: list[str]) -> bool:
    if cert is None:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(map(_general_name, hosts)) <= set(san)


# -- making --------------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mfaplane devstack"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    name = _name("mfaplane devstack CA")
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _server_extensions(hosts: list[str]) -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]


def _client_extensions() -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)]


def _issue(cert_path: Path, key_path: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
           now: datetime.datetime, extensions: list[tuple[x509.ExtensionType, bool]], common_name: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    _write_key(key_path, key)  # the key first: a certificate on disk always has its key
    write_file(cert_path, builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), 0o644)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_file(path, pem, 0o600)


def write_file(path: Path, content: bytes, mode: int, group: int | None = None) -> None:
    """Atomically, created with `mode` (and `group`): a secret is never readable by others, not even for
    a moment, and a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            if group is not None:
                os.fchown(file.fileno(), -1, group)
            os.fchmod(file.fileno(), mode)  # O_CREAT's mode is masked by the umask; an existing file keeps its own
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
