"""TOTP (RFC 6238): HOTP over 30-second time steps, SHA-1, 6 digits, one step of tolerance each way.

Time always comes from the caller's clock value (an aware datetime), never from the system clock,
and the time step is computed here from the POSIX timestamp so a naive datetime can never be read
as local time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import b32encode
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pyotp

DIGITS = 6
STEP_SECONDS = 30
TOLERANCE_STEPS = 1
SECRET_BYTES = 20  # 160 bits, the HMAC-SHA-1 output size recommended by RFC 4226
MIN_SECRET_BYTES = 16  # RFC 4226: at least 128 bits


@dataclass(frozen=True)
class TOTPSecret:
    """A TOTP key in plaintext. Its repr never shows the key, so it is safe in logs and tracebacks."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < MIN_SECRET_BYTES:
            raise ValueError(f"a TOTP key has at least {MIN_SECRET_BYTES} bytes")

    @property
    def base32(self) -> str:
        return b32encode(self.key).decode("ascii").rstrip("=")


def new_secret(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> TOTPSecret:
    return TOTPSecret(random_bytes(SECRET_BYTES))


def generator(secret: TOTPSecret, digits: int = DIGITS) -> pyotp.TOTP:
    return pyotp.TOTP(secret.base32, digits=digits, digest=hashlib.sha1, interval=STEP_SECONDS)


def time_step(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("TOTP time must be timezone-aware")
    return int(at.timestamp()) // STEP_SECONDS


def code_at(secret: TOTPSecret, step: int, digits: int = DIGITS) -> str:
    return generator(secret, digits).generate_otp(step)


def is_code_shaped(code: str, digits: int = DIGITS) -> bool:
    return len(code) == digits and code.isascii() and code.isdigit()


def match_step(
    secret: TOTPSecret, code: str, now: datetime, *, after_step: int | None, digits: int = DIGITS
) -> int | None:
    """The time step whose code is `code`, within the tolerance window around `now`, or None.

    Steps up to and including `after_step` (the last one accepted) are never matched: a code is
    accepted at most once, and never one older than a code already accepted.
    """
    current = time_step(now)
    candidates = [
        step
        for step in range(max(current - TOLERANCE_STEPS, 0), current + TOLERANCE_STEPS + 1)
        if after_step is None or step > after_step
    ]
    # Every candidate is compared, in constant time, so timing does not tell which step matched.
    matches = [
        step for step in candidates if hmac.compare_digest(code_at(secret, step, digits).encode(), code.encode())
    ]
    return min(matches, default=None)


def is_replay(secret: TOTPSecret, code: str, now: datetime, *, last_step: int | None, digits: int = DIGITS) -> bool:
    """Whether `code` is the code of `last_step`, the step last accepted, still within the tolerance
    window around `now`: the code just accepted, sent again. The code of any other step is not,
    even one `match_step` no longer accepts because a later step was accepted."""
    if last_step is None or abs(last_step - time_step(now)) > TOLERANCE_STEPS:
        return False
    return hmac.compare_digest(code_at(secret, last_step, digits).encode(), code.encode())
