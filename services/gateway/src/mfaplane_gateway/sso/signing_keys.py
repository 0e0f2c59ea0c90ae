"""The keys that sign ID tokens and SAML assertions, from the PEM file SSO_SIGNING_KEYS_FILE.

The first key signs; every key in the file is published in the JWKS (the SAML metadata carries the
signing key's certificate only), so that a rotation is: put the new key first, keep the old one after it
until every application has fetched the new one, then drop it. A key is named by its RFC 7638 thumbprint
(`kid`), the same in every replica.

SAML service providers pin a certificate rather than a key. Each key's certificate is made from the
key alone (self-signed, fixed subject, serial and validity), so every replica makes the same bytes and
operators keep nothing but the keys; service providers check the signature against the pinned
certificate, not a chain, and the validity is wide for that reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

PEM_KEY = re.compile(rb"-----BEGIN (?:RSA )?PRIVATE KEY-----.+?-----END (?:RSA )?PRIVATE KEY-----", re.S)
ALGORITHM = "RS256"
MIN_BITS = 2048
CERTIFICATE_VALIDITY = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2046, 1, 1, tzinfo=UTC))
# The kid of the key committed for the dev overlay (deploy/k8s/overlays/dev/sso-signing-keys.pem).
PUBLISHED_KEY_IDS = frozenset({"TgpD6TrjIZL_qZTZRJurn82zV4EdaCNNtjX0f_JoKbM"})


@dataclass(frozen=True)
class SigningKey:
    pem: bytes

    @cached_property
    def jwk(self) -> RSAKey:
        key = RSAKey.import_key(self.pem, {"use": "sig", "alg": ALGORITHM})
        key.ensure_kid()
        return key

    @property
    def kid(self) -> str:
        kid = self.jwk.kid
        assert kid is not None  # `jwk` sets it
        return kid

    @cached_property
    def private(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_BITS:
            raise ValueError(f"SSO signing keys must be RSA keys of at least {MIN_BITS} bits")
        return key

    @cached_property
    def certificate_pem(self) -> bytes:
        private = self.private
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mfaplane SSO signing key {self.kid[:16]}")])
        serial = int.from_bytes(hashlib.sha256(self.kid.encode()).digest()[:16], "big") >> 1
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(private.public_key()).serial_number(serial)
                       .not_valid_before(CERTIFICATE_VALIDITY[0]).not_valid_after(CERTIFICATE_VALIDITY[1])
                       .sign(private, hashes.SHA256()))
        return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class SigningKeys:
    keys: tuple[SigningKey, ...]

    @classmethod
    def from_file(cls, path: str) -> SigningKeys:
        blocks = PEM_KEY.findall(Path(path).read_bytes())
        if not blocks:
            raise ValueError(f"SSO_SIGNING_KEYS_FILE {path} holds no PEM private key")
        keys = tuple(SigningKey(block) for block in blocks)
        for key in keys:
            _ = key.private  # refuses a key that is no RSA key of MIN_BITS now, not at the first sign-in
        return cls(keys)

    @property
    def active(self) -> SigningKey:
        return self.keys[0]

    @property
    def any_published(self) -> bool:
        return any(key.kid in PUBLISHED_KEY_IDS for key in self.keys)

    def jwks(self) -> dict:
        return {"keys": [key.jwk.as_dict(private=False) for key in self.keys]}

