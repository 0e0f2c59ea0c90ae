"""The users CSV neutralises spreadsheet formulas (CSV injection, OWASP): a cell a spreadsheet would
evaluate, also behind leading spaces or invisible characters it skips, starts with a quote."""

from __future__ import annotations

import pytest

from mfaplane_gateway.api.users import csv_cell

FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", " =HYPERLINK(\"http://x\")", "\u00a0=1",
            "\u3000@x", "\x00=1", "\x1b=1", "\x85=1", "\u200b=1", "\ufeff+1", " \t \u200b-1", "\t", "\rtext"]
PLAIN = ["Ada Lovelace", "a=b", "O'Brien", "ada+tag@example.com", "  Ada", "\u200bAda", "'=1", ""]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_formula_start_is_neutralised(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("text", PLAIN)
def test_other_text_is_written_as_it_is(text: str) -> None:
    assert csv_cell(text) == text


def test_values_that_are_not_text_are_written_as_they_are() -> None:
    assert [csv_cell(v) for v in (-5, True, None)] == [-5, True, ""]
