from __future__ import annotations

import re

from mfaplane_mfa import recovery_codes

FORMAT = re.compile(r"^[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}$")


def test_ten_distinct_codes_of_80_bits_are_issued():
    issued = recovery_codes.issue()
    assert len(issued.codes) == len(issued.hashes) == 10
    assert len(set(issued.codes)) == 10
    assert all(FORMAT.match(code) for code in issued.codes)


def test_every_bit_of_randomness_reaches_the_code():
    def constant(byte):
        return lambda n: bytes([byte]) * n

    assert recovery_codes.issue(constant(0), count=1).codes == ("2222-2222-2222-2222",)
    assert recovery_codes.issue(constant(0xFF), count=1).codes == ("ZZZZ-ZZZZ-ZZZZ-ZZZZ",)
    one_bit = iter([bytes(9) + b"\x01", bytes(16)])
    assert recovery_codes.issue(lambda n: next(one_bit), count=1).codes == ("2222-2222-2222-2223",)


def test_only_hashes_are_kept_and_each_has_its_own_salt():
    issued = recovery_codes.issue()
    assert not any(
        code in stored or code.replace("-", "") in stored for code in issued.codes for stored in issued.hashes
    )
    assert len({stored.split(":")[0] for stored in issued.hashes}) == 10
    same = [recovery_codes.hash_code("2222-2222-2222-2222", salt) for salt in (b"a" * 16, b"b" * 16)]
    assert same[0] != same[1]


def test_a_code_matches_its_own_hash_only():
    issued = recovery_codes.issue()
    for index, code in enumerate(issued.codes):
        assert recovery_codes.match(code, issued.hashes, frozenset()) == index
    assert recovery_codes.match("2222-2222-2222-2222", issued.hashes, frozenset()) is None


def test_used_codes_no_longer_match():
    issued = recovery_codes.issue()
    assert recovery_codes.match(issued.codes[2], issued.hashes, frozenset({2})) is None
    assert recovery_codes.match(issued.codes[3], issued.hashes, frozenset({2})) == 3


def test_case_and_dashes_do_not_matter():
    issued = recovery_codes.issue()
    assert recovery_codes.match(issued.codes[0].lower().replace("-", ""), issued.hashes, frozenset()) == 0


def test_codes_never_show_in_the_repr():
    issued = recovery_codes.issue()
    assert not any(code in repr(issued) for code in issued.codes)
