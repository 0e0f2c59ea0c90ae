from __future__ import annotations

import base64
import uuid

import pytest

from mfaplane_mfa.key_vault import KeyVault, UnreadableSecret
from mfaplane_mfa.totp import TOTPSecret

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
SECRET = TOTPSecret(bytes(range(1, 21)))
SECRET_ID = uuid.UUID(int=7)


def test_a_sealed_secret_opens_to_the_same_key():
    vault = KeyVault({"k1": OLD}, "k1")
    sealed = vault.seal(SECRET, SECRET_ID)
    assert vault.open(sealed, SECRET_ID) == SECRET
    assert SECRET.key not in sealed and SECRET.base32.encode() not in sealed


def test_the_key_id_travels_with_the_ciphertext_and_nonces_are_fresh():
    vault = KeyVault({"k1": OLD}, "k1")
    first, second = vault.seal(SECRET, SECRET_ID), vault.seal(SECRET, SECRET_ID)
    assert first[:3] == b"\x02k1"
    assert first != second
    assert len(first) == 1 + 2 + 12 + 20 + 16


def test_rotation_keeps_old_secrets_readable_and_seals_new_ones_with_the_active_key():
    sealed_before = KeyVault({"k1": OLD}, "k1").seal(SECRET, SECRET_ID)
    rotated = KeyVault({"k1": OLD, "k2": NEW}, "k2")
    assert rotated.open(sealed_before, SECRET_ID) == SECRET
    resealed = rotated.seal(rotated.open(sealed_before, SECRET_ID), SECRET_ID)
    assert resealed.startswith(b"\x02k2")
    retired = KeyVault({"k2": NEW}, "k2")
    assert retired.open(resealed, SECRET_ID) == SECRET
    with pytest.raises(UnreadableSecret):
        retired.open(sealed_before, SECRET_ID)


def test_a_sealed_secret_is_bound_to_its_secret_id():
    vault = KeyVault({"k1": OLD}, "k1")
    with pytest.raises(UnreadableSecret):
        vault.open(vault.seal(SECRET, SECRET_ID), uuid.UUID(int=8))


@pytest.mark.parametrize("position", [0, 3, 10, 20, -1])
def test_tampering_is_detected(position):
    vault = KeyVault({"k1": OLD}, "k1")
    sealed = bytearray(vault.seal(SECRET, SECRET_ID))
    sealed[position] ^= 0x01
    with pytest.raises(UnreadableSecret):
        vault.open(bytes(sealed), SECRET_ID)


@pytest.mark.parametrize("sealed", [b"", b"\x05k1", b"\x02k1" + bytes(12)])
def test_truncated_input_is_unreadable(sealed):
    with pytest.raises(UnreadableSecret):
        KeyVault({"k1": OLD}, "k1").open(sealed, SECRET_ID)


def test_configuration_errors():
    with pytest.raises(ValueError, match="active"):
        KeyVault({"k1": OLD}, "k2")
    with pytest.raises(ValueError, match="32 bytes"):
        KeyVault({"k1": OLD[:16]}, "k1")
    with pytest.raises(ValueError, match="key id"):
        KeyVault({"": OLD}, "")
    with pytest.raises(ValueError, match="base64"):
        KeyVault.from_base64({"k1": "not base64!"}, "k1")


def test_keys_from_base64_configuration():
    vault = KeyVault.from_base64({"k1": base64.b64encode(OLD).decode()}, "k1")
    assert KeyVault({"k1": OLD}, "k1").open(vault.seal(SECRET, SECRET_ID), SECRET_ID) == SECRET


def test_the_repr_names_key_ids_only():
    text = repr(KeyVault({"k1": OLD, "k2": NEW}, "k2"))
    assert text == "KeyVault(key_ids=['k1', 'k2'], active_key_id='k2')"
