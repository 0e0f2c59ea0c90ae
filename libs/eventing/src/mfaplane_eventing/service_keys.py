"""Each service's Ed25519 key, and the public keys of all services.

A service holds one private key (`SERVICE_SIGNING_KEY`, PKCS#8 PEM, from a Secret). It signs the
events the service publishes and the calls it makes to other services; the two uses sign
differently framed inputs (a JWS for calls, a prefixed canonical document for events), so a
signature made for one can never be taken for the other.

Every service reads the same public key set (`SERVICE_PUBLIC_KEYS`): which keys speak for which
service. A key's id is derived from the key itself (the first 16 bytes of the SHA-256 of its raw
form), so a key id can never name another key than the one it was computed from, and an operator
only distributes keys, never ids. A service may have several keys at once while keys rotate.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class UntrustedSignature(Exception):
    """A signature that does not prove who made it; the message says why, never a key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # a stable label for metrics and dead letters


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return "ed25519:" + hashlib.sha256(raw_public(key)).hexdigest()[:32]


class ServiceKey:
    """A service's private key. Its repr names the key id only."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def from_pem(cls, pem: str) -> ServiceKey:
        try:
            private = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("SERVICE_SIGNING_KEY is not an unencrypted PKCS#8 PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("SERVICE_SIGNING_KEY must be an Ed25519 key")
        return cls(private)

    @classmethod
    def generate(cls) -> ServiceKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def private_pem(self) -> str:
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode()

    def public_base64(self) -> str:
        return base64.b64encode(raw_public(self.public)).decode()

    def __repr__(self) -> str:
        return f"ServiceKey({self.key_id})"


@dataclass(frozen=True)
class PublicKey:
    service: str
    key: Ed25519PublicKey


class TrustedKeys:
    """The public keys of every service, by key id."""

    def __init__(self, keys: dict[str, PublicKey]) -> None:
        self._keys = keys

    @classmethod
    def from_json(cls, text: str) -> TrustedKeys:
        """`{"service": ["base64 of a raw 32-byte Ed25519 public key", ...], ...}`."""
        keys: dict[str, PublicKey] = {}
        for service, public in _listed_keys(text):
            if keys.setdefault(key_id(public), PublicKey(service, public)).service != service:
                raise ValueError("SERVICE_PUBLIC_KEYS lists one key under two services")
        if not keys:
            raise ValueError(KEYS_FORMAT)
        return cls(keys)

    def service_of(self, kid: str) -> str | None:
        found = self._keys.get(kid)
        return found.service if found else None

    def owner(self, kid: str) -> PublicKey:
        """The key `kid` names, or UntrustedSignature."""
        found = self._keys.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise UntrustedSignature("unknown_key", "signed with a key that no service holds")
        return found

    def verify(self, kid: str, signature: bytes, data: bytes) -> str:
        """The service whose key `kid` made `signature` over `data`, or UntrustedSignature."""
        public = self.owner(kid)
        try:
            public.key.verify(signature, data)
        except InvalidSignature:
            raise UntrustedSignature("bad_signature", "the signature does not match the content") from None
        return public.service


KEYS_FORMAT = 'SERVICE_PUBLIC_KEYS must be {"service": ["base64 Ed25519 public key", ...], ...}'


def _listed_keys(text: str) -> list[tuple[str, Ed25519PublicKey]]:
    try:
        return [(service, Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded, validate=True)))
                for service, listed in json.loads(text).items() for encoded in listed]
    except (ValueError, TypeError, AttributeError):  # binascii.Error is a ValueError
        raise ValueError(KEYS_FORMAT) from None
