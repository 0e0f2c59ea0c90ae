"""Passwords an attacker tries first are refused, whatever their length or characters; passphrases and
random passwords pass (NIST SP 800-63B: a blocklist, no composition rules)."""

from __future__ import annotations

import pytest

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_identity.password_policy import refuse_guessable

CONTEXT = ("ada@example.com", "Ada Lovelace")


@pytest.mark.parametrize("password", ["password1", "Password123!", "qwertyuiop", "1q2w3e4r5t", "ada@example.com1",
                                      "lovelace1", "mfaplane2026", "aaaaaaaaaaaa", "a" * 256, "abcabcabcabc"])
async def test_common_and_expected_passwords_are_refused_and_not_echoed(password: str) -> None:
    with pytest.raises(Rejected) as refusal:
        await refuse_guessable(password, *CONTEXT)
    assert (refusal.value.code, refusal.value.kind) == ("password_too_guessable", Refusal.INVALID)
    assert password not in refusal.value.detail


@pytest.mark.parametrize("password", ["correct horse battery", "tr0ub4dor&3 kayak", "Zürich 1847 regenbogen",
                                      "kayak shelf orbit " + "x" * 200])
async def test_passphrases_and_random_passwords_pass_without_composition_rules(password: str) -> None:
    await refuse_guessable(password, *CONTEXT)
