from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp

from mfaplane_mfa import totp
from mfaplane_mfa.setup_material import grouped, setup_material
from mfaplane_mfa.totp import TOTPSecret

SECRET = TOTPSecret(bytes(range(1, 21)))


def material():
    return setup_material(SECRET, account="ada@example.com", issuer="Example Org")


def test_the_key_is_grouped_in_fours_for_typing():
    text = material().key_text
    assert text.replace(" ", "") == SECRET.base32
    assert [len(group) for group in text.split(" ")] == [4] * 8
    assert grouped("ABCDEFGHIJ") == "ABCD EFGH IJ"


def test_the_otpauth_uri_names_issuer_account_and_key():
    uri = material().otpauth_uri
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Example Org:ada@example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET.base32]
    assert query["issuer"] == ["Example Org"]


def test_an_authenticator_reading_the_uri_produces_our_codes():
    at = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    app = pyotp.parse_uri(material().otpauth_uri)
    assert app.at(at) == totp.code_at(SECRET, totp.time_step(at))


def test_the_qr_code_comes_as_svg_and_png():
    result = material()
    assert result.qr_svg.startswith("<svg") and "TOTP setup QR code" in result.qr_svg
    assert result.qr_png.startswith(b"\x89PNG\r\n\x1a\n")


def test_the_repr_reveals_nothing():
    text = repr(material())
    assert SECRET.base32 not in text and SECRET.base32[:4] not in text
