"""One-time recovery codes: issued with a completed setup, shown once, stored only as hashes.

A code is 80 random bits written as 16 characters of an unambiguous alphabet, grouped in fours
(`7KQM-2XHD-...`). With that much entropy a stolen hash cannot be reversed by guessing (2^80
tries), so a slow password hash buys nothing and a single salted SHA-256 is enough; the per-code
salt keeps precomputed tables useless and equal codes from having equal hashes. A stored hash is
`<salt hex>:<sha256 hex>`. Which codes are used up is aggregate state (from TOTPVerified events),
so the hashes stay in the order issued: a code is known by its index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

COUNT = 10
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols, no 0/O or 1/I/L confusion
CODE_BYTES = 10  # 80 bits = 16 symbols of 5 bits
SALT_BYTES = 16
GROUP = 4


@dataclass(frozen=True)
class IssuedRecoveryCodes:
    """Codes to show the principal once (`codes`) and to store (`hashes`), in the same order."""

    codes: tuple[str, ...] = field(repr=False)
    hashes: tuple[str, ...]


def issue(random_bytes: Callable[[int], bytes] = secrets.token_bytes, count: int = COUNT) -> IssuedRecoveryCodes:
    codes = tuple(_new_code(random_bytes) for _ in range(count))
    return IssuedRecoveryCodes(codes, tuple(hash_code(code, random_bytes(SALT_BYTES)) for code in codes))


def _new_code(random_bytes: Callable[[int], bytes]) -> str:
    bits = int.from_bytes(random_bytes(CODE_BYTES), "big")
    symbols = "".join(ALPHABET[(bits >> shift) & 31] for shift in range(CODE_BYTES * 8 - 5, -1, -5))
    return "-".join(symbols[i : i + GROUP] for i in range(0, len(symbols), GROUP))


def _normalize(code: str) -> str:
    return code.replace("-", "").upper()


def hash_code(code: str, salt: bytes) -> str:
    digest = hashlib.sha256(salt + _normalize(code).encode()).hexdigest()
    return f"{salt.hex()}:{digest}"


def match(code: str, hashes: Sequence[str], used: Set[int]) -> int | None:
    """The index of `code` among the unused codes, or None. Case and dashes do not matter."""
    found = None
    for index, stored in enumerate(hashes):
        salt, _ = stored.split(":")
        if hmac.compare_digest(hash_code(code, bytes.fromhex(salt)), stored) and index not in used:
            found = index
    return found
