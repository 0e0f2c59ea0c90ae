"""TOTP keys at rest: AES-256-GCM under keys from configuration, with rotation.

Configuration holds every key by id and names the active one. New secrets are sealed with the
active key; the sealed bytes say which key sealed them, so a secret sealed before a rotation still
opens as long as its key stays configured. Once every stored secret has been re-sealed under the
new key (open, then seal), the old key can be dropped, which also makes backups of the old
ciphertext unreadable.

Sealed layout: 1 byte key id length, key id (UTF-8), 12 byte nonce, ciphertext with GCM tag. The
secret id is authenticated as associated data, so a sealed key cannot be moved to another row.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfaplane_mfa.totp import TOTPSecret

KEY_BYTES = 32
NONCE_BYTES = 12
MAX_KEY_ID_BYTES = 255


class UnreadableSecret(Exception):
    """Sealed bytes that no configured key opens: unknown key id, tampering, or another secret id."""


class KeyVault:
    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"the active key id {active_key_id!r} is not among the configured keys")
        for key_id, key in keys.items():
            if not key_id or len(key_id.encode()) > MAX_KEY_ID_BYTES:
                raise ValueError(f"a key id has 1 to {MAX_KEY_ID_BYTES} bytes: {key_id!r}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes, not {len(key)}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active_key_id = active_key_id

    @classmethod
    def from_base64(cls, keys: Mapping[str, str], active_key_id: str) -> KeyVault:
        """Keys as configuration carries them: base64 text (e.g. from `openssl rand -base64 32`)."""
        decoded = {}
        for key_id, text in keys.items():
            try:
                decoded[key_id] = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise ValueError(f"key {key_id!r} is not valid base64") from None
        return cls(decoded, active_key_id)

    def __repr__(self) -> str:
        return f"KeyVault(key_ids={sorted(self._ciphers)!r}, active_key_id={self._active_key_id!r})"

    def seal(self, secret: TOTPSecret, secret_id: uuid.UUID) -> bytes:
        key_id = self._active_key_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self._active_key_id].encrypt(nonce, secret.key, secret_id.bytes)
        return bytes([len(key_id)]) + key_id + nonce + ciphertext

    def open(self, sealed: bytes, secret_id: uuid.UUID) -> TOTPSecret:
        try:
            id_length = sealed[0]
            key_id = sealed[1 : 1 + id_length].decode()
            nonce = sealed[1 + id_length : 1 + id_length + NONCE_BYTES]
            cipher = self._ciphers[key_id]
            return TOTPSecret(cipher.decrypt(nonce, sealed[1 + id_length + NONCE_BYTES :], secret_id.bytes))
        except (IndexError, UnicodeDecodeError, KeyError, ValueError, InvalidTag):
            raise UnreadableSecret(f"sealed secret {secret_id} cannot be opened") from None
