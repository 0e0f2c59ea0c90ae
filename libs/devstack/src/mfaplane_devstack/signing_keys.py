"""Each service's Ed25519 signing key for local runs, made once per data folder.

Layout (docker-compose's init container writes the same with `python -m mfaplane_devstack
signing-keys DIR`): `DIR/signing/<service>.pem`, the private key (PKCS#8, mode 0600), and
`DIR/service-public-keys.json`, every service's public key in the form SERVICE_PUBLIC_KEYS takes.
A service is given only its own private key (SERVICE_SIGNING_KEY_FILE) and the public file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PUBLIC_KEYS = "service-public-keys.json"


def private_key_path(directory: Path, service: str) -> Path:
    return directory / "signing" / f"{service}.pem"


def public_keys_path(directory: Path) -> Path:
    return directory / PUBLIC_KEYS


def ensure_signing_keys(directory: Path, services: Iterable[str]) -> None:
    """Makes the keys missing from `directory` and writes the public keys of all of them."""
    services = list(services)
    (directory / "signing").mkdir(parents=True, exist_ok=True)
    public = {}
    for service in services:
        path = private_key_path(directory, service)
        if not path.exists():
            path.touch(mode=0o600)
            path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        public[service] = [base64.b64encode(raw).decode()]
    public_keys_path(directory).write_text(json.dumps(public, indent=2) + "\n")
