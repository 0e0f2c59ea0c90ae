"""What a principal needs to add a new TOTP key to an authenticator app, shown once at setup."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import segno

from mfaplane_mfa.totp import TOTPSecret, generator

GROUP = 4
QR_SCALE = 5


@dataclass(frozen=True)
class SetupMaterial:
    """Every field reveals the key, so none is in the repr."""

    key_text: str = field(repr=False)  # base32 grouped in fours, for typing
    otpauth_uri: str = field(repr=False)
    qr_svg: str = field(repr=False)
    qr_png: bytes = field(repr=False)


def grouped(base32: str) -> str:
    return " ".join(base32[i : i + GROUP] for i in range(0, len(base32), GROUP))


def otpauth_uri(secret: TOTPSecret, *, account: str, issuer: str) -> str:
    return generator(secret).provisioning_uri(name=account, issuer_name=issuer)


def setup_material(secret: TOTPSecret, *, account: str, issuer: str) -> SetupMaterial:
    """`account` is the principal's email; `issuer` names the organisation in the app."""
    uri = otpauth_uri(secret, account=account, issuer=issuer)
    qr = segno.make(uri, error="m")
    png = io.BytesIO()
    qr.save(png, kind="png", scale=QR_SCALE)
    return SetupMaterial(
        key_text=grouped(secret.base32),
        otpauth_uri=uri,
        qr_svg=qr.svg_inline(scale=QR_SCALE, title="TOTP setup QR code"),
        qr_png=png.getvalue(),
    )
