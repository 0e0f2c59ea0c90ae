"""Names and search terms: any character a name needs, no control character or line break."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from mfaplane_contracts.text import CONTROL_CHARACTERS, PATTERN, DisplayName

NAMES = TypeAdapter(DisplayName)
REFUSED = ["nul\x00inside", "\x01", "tab\there", "line\nbreak", "cr\r", "esc\x1b[31m", "del\x7f", "next line\x85",
           "c1\x9b", "line\u2028separator", "paragraph\u2029separator"]
ACCEPTED = ["Ada Lovelace", "Zoë Ünal-Ærø", "李小龙", "محمد", "Ma\u200cryam", "👩\u200d💻 dev", "O'Brien",
            "=SUM(A1)"]


@pytest.mark.parametrize("name", REFUSED)
def test_a_control_character_anywhere_is_refused_as_such(name: str) -> None:
    with pytest.raises(ValidationError) as refusal:
        NAMES.validate_python(name)
    assert [error["type"] for error in refusal.value.errors()] == [CONTROL_CHARACTERS]
    assert not re.fullmatch(PATTERN.strip("^$"), name), "the documented pattern says the same"


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_of_any_script_with_joiners_and_marks_are_kept_as_given(name: str) -> None:
    assert NAMES.validate_python(name) == name
    assert re.fullmatch(PATTERN.strip("^$"), name)


def test_lengths_are_checked_first() -> None:
    for name, error in (("", "string_too_short"), ("\x00" * 201, "string_too_long")):
        with pytest.raises(ValidationError) as refusal:
            NAMES.validate_python(name)
        assert [e["type"] for e in refusal.value.errors()] == [error]
