"""The SSO signing keys file: the first key signs, every key is published (a rotation), each is named by its
RFC 7638 thumbprint and has the same certificate wherever it is loaded; weak or non-RSA keys stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mfaplane_gateway.sso.signing_keys import SigningKeys


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def keys_file(tmp_path: Path, *keys) -> str:
    path = tmp_path / "sso-signing-keys.pem"
    path.write_bytes(b"\n".join(pem(key) for key in keys))
    return str(path)


def test_the_new_key_signs_and_the_old_one_stays_published_until_it_is_removed(tmp_path: Path) -> None:
    new, old = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    rotating = SigningKeys.from_file(keys_file(tmp_path, new, old))
    published = rotating.jwks()["keys"]
    assert [key["kid"] for key in published] == [key.kid for key in rotating.keys]
    assert rotating.active.private.private_numbers() == new.private_numbers()
    assert all(set(key) == {"kty", "n", "e", "kid", "use", "alg"} for key in published)  # public parts only
    assert {key["alg"] for key in published} == {"RS256"}
    assert SigningKeys.from_file(keys_file(tmp_path, old)).active.kid == rotating.keys[1].kid


def test_every_replica_makes_the_same_certificate_from_a_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    first, second = (SigningKeys.from_file(keys_file(tmp_path, key)).active.certificate_pem for _ in range(2))
    assert first == second
    certificate = x509.load_pem_x509_certificate(first)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize("weak", [rsa.generate_private_key(65537, 1024), ec.generate_private_key(ec.SECP256R1())],
                         ids=["rsa-1024", "ec"])
def test_a_weak_or_non_rsa_key_stops_start_up(tmp_path: Path, weak) -> None:
    with pytest.raises(ValueError, match="RSA keys of at least 2048 bits"):
        SigningKeys.from_file(keys_file(tmp_path, rsa.generate_private_key(65537, 2048), weak))
    (tmp_path / "empty.pem").write_text("no key here")
    with pytest.raises(ValueError, match="holds no PEM private key"):
        SigningKeys.from_file(str(tmp_path / "empty.pem"))
