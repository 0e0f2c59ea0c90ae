from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from mfaplane_mfa import totp
from mfaplane_mfa.totp import TOTPSecret

RFC_SECRET = TOTPSecret(b"12345678901234567890")

# RFC 6238 Appendix B, the SHA-1 rows: (Unix time, 8-digit code).
RFC_6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("unix_time", "code"), RFC_6238_SHA1)
def test_rfc_6238_vectors(unix_time, code):
    at = datetime.fromtimestamp(unix_time, UTC)
    assert totp.code_at(RFC_SECRET, totp.time_step(at), digits=8) == code
    assert totp.match_step(RFC_SECRET, code, at, after_step=None, digits=8) == unix_time // 30


@pytest.mark.parametrize(("unix_time", "code"), RFC_6238_SHA1)
def test_rfc_vectors_truncated_to_six_digits(unix_time, code):
    # HOTP's dynamic truncation takes the value modulo 10^digits, so 6 digits are the last 6 of 8.
    at = datetime.fromtimestamp(unix_time, UTC)
    assert totp.match_step(RFC_SECRET, code[-6:], at, after_step=None) == unix_time // 30


def test_six_digit_codes_agree_with_pyotp_totp_at_wall_time():
    secret = TOTPSecret(bytes(range(20)))
    at = datetime(2025, 6, 1, 12, 0, 29, tzinfo=UTC)
    assert totp.code_at(secret, totp.time_step(at)) == pyotp.TOTP(secret.base32).at(at)


def test_time_step_is_thirty_seconds():
    start = datetime.fromtimestamp(30 * 1000, UTC)
    assert totp.time_step(start) == 1000
    assert totp.time_step(start + timedelta(seconds=29.999)) == 1000
    assert totp.time_step(start + timedelta(seconds=30)) == 1001


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        totp.time_step(datetime(2025, 1, 1, 12, 0))


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_one_step_of_tolerance_each_way(offset, accepted):
    now = datetime(2025, 6, 1, 12, 0, 15, tzinfo=UTC)
    step = totp.time_step(now) + offset
    code = totp.code_at(RFC_SECRET, step)
    assert totp.match_step(RFC_SECRET, code, now, after_step=None) == (step if accepted else None)


def test_steps_up_to_the_last_accepted_are_never_matched():
    now = datetime(2025, 6, 1, 12, 0, 15, tzinfo=UTC)
    current = totp.time_step(now)
    code = totp.code_at(RFC_SECRET, current)
    assert totp.match_step(RFC_SECRET, code, now, after_step=current - 1) == current
    assert totp.match_step(RFC_SECRET, code, now, after_step=current) is None
    assert totp.match_step(RFC_SECRET, code, now, after_step=current + 1) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "٣٣٣٣٣٣", "12345678901234567890"])
def test_codes_of_the_wrong_shape_never_match(code):
    now = datetime(2025, 6, 1, 12, 0, 15, tzinfo=UTC)
    assert not totp.is_code_shaped(code)
    assert totp.match_step(RFC_SECRET, code, now, after_step=None) is None


def test_new_secrets_are_160_random_bits():
    requested = []

    def random_bytes(n):
        requested.append(n)
        return bytes(n)

    assert totp.new_secret(random_bytes).key == bytes(20)
    assert requested == [20]
    assert len({totp.new_secret().key for _ in range(10)}) == 10


def test_a_secret_never_shows_in_its_repr():
    secret = TOTPSecret(bytes(range(20)))
    assert secret.base32 not in repr(secret) and secret.base32 not in str(secret)
    assert "\\x01" not in repr(secret)


def test_secrets_shorter_than_128_bits_are_refused():
    with pytest.raises(ValueError):
        TOTPSecret(bytes(15))


def test_base32_has_no_padding():
    assert TOTPSecret(bytes(16)).base32 == "A" * 26


def test_a_code_shared_by_two_steps_uses_up_the_earlier_step_first():
    # Found by search: this key gives 542899 at steps 58245265 and 58245266 (a 1 in 10^6 event).
    secret = TOTPSecret(bytes(range(1, 21)))
    now = datetime.fromtimestamp(58245266 * 30, UTC)
    assert totp.code_at(secret, 58245265) == totp.code_at(secret, 58245266) == "542899"
    assert totp.match_step(secret, "542899", now, after_step=None) == 58245265
    assert totp.match_step(secret, "542899", now, after_step=58245265) == 58245266
