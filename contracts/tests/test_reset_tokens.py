"""A password reset token is good only with the key that made it, for the reset id it was made for."""

from __future__ import annotations

import uuid

import pytest

from mfaplane_contracts import reset_tokens

KEY = "k" * 32
RESET = uuid.uuid4()


def test_a_token_gives_back_its_reset_id_under_its_key() -> None:
    token = reset_tokens.token(KEY, RESET)
    assert len(token) == reset_tokens.MAX_LENGTH
    assert reset_tokens.reset_id_of(KEY, token) == RESET


def _forgeries() -> list[str]:
    token = reset_tokens.token(KEY, RESET)
    other_id = uuid.uuid4()
    return [
        reset_tokens.token("another key of 32 characters....", RESET),  # made with another key
        f"{other_id.hex}.{token.partition('.')[2]}",  # another reset's id with this MAC
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # the MAC changed
        token.upper(), token + "=", token[:-1], " " + token, RESET.hex, "", "not.a-token",
    ]


@pytest.mark.parametrize("forged", _forgeries())
def test_a_forged_altered_or_malformed_token_names_no_reset(forged: str) -> None:
    assert reset_tokens.reset_id_of(KEY, forged) is None
