"""Text that people type into requests: names and search terms.

Such text may hold any character a name needs (accents, scripts, emoji, joiners) but no control
character: C0 and C1 controls (NUL among them), DEL, and the line and paragraph separators. Those
break lines in logs, mails and CSV files, truncate text in C libraries, and PostgreSQL cannot store
NUL at all. The rule is for requests only: events already stored stay readable as they are.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

# The validation error's type; the services answer it with a 400 `invalid_text` problem.
CONTROL_CHARACTERS = "control_characters"
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})  # controls, line separator, paragraph separator
# The same rule for clients, in the API documents (ECMA-262 syntax).
PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"


def _printable(text: str) -> str:
    if any(unicodedata.category(character) in _REFUSED_CATEGORIES for character in text):
        raise PydanticCustomError(CONTROL_CHARACTERS, "Text must not contain control characters or line breaks")
    return text


class _Printable:
    """Checks the text and documents the rule as the schema's `pattern`."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_printable, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {**handler(schema), "pattern": PATTERN}


def plain_text(max_length: int, min_length: int = 0) -> Any:
    """Text of that length without control characters (the lengths are checked first)."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), _Printable()]


# The name of a user, admin, system or API key, as a request gives it.
DisplayName = plain_text(200, min_length=1)
