"""Each service's Ed25519 signing key for local runs, made once per data folder.

Layout (docker-compose's init container writes the same with `python -m mfaplane_devstack
signing-keys DIR`): `DIR/signing/<service>.pem`, the private key (PKCS#8, mode 0600), and
`DIR/service-public-keys.json`, every service's public key in the form SERVICE_PUBLIC_KEYS takes.
A service is given only its own private key (SERVICE_SIGNING_KEY_FILE) and the public file.
The gateway also gets `DIR/signing/sso-signing-keys.pem`, the RSA key that signs ID tokens and SAML
assertions (SSO_SIGNING_KEYS_FILE).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mfaplane_eventing.service_keys import ServiceKey

PUBLIC_KEYS = "service-public-keys.json"


def private_key_path(directory: Path, service: str) -> Path:
    return directory / "signing" / f"{service}.pem"


def public_keys_path(directory: Path) -> Path:
    return directory / PUBLIC_KEYS


def ensure_signing_keys(directory: Path, services: Iterable[str]) -> None:
    """Makes the keys missing from `directory` and writes the public keys of all of them.

    The public file is replaced (by a rename) only when it changes: services starting meanwhile read it."""
    (directory / "signing").mkdir(parents=True, exist_ok=True)
    public = {}
    for service in services:
        path = private_key_path(directory, service)
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(ServiceKey.generate().private_pem())
        public[service] = [ServiceKey.from_pem(path.read_text()).public_base64()]
    text, target = json.dumps(public, indent=2) + "\n", public_keys_path(directory)
    if not target.exists() or target.read_text() != text:
        written = target.with_suffix(".tmp")
        written.write_text(text)
        written.replace(target)


def ensure_sso_signing_key(directory: Path) -> Path:
    """The gateway's SSO signing key (SSO_SIGNING_KEYS_FILE), made once per data folder."""
    path = directory / "signing" / "sso-signing-keys.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path
