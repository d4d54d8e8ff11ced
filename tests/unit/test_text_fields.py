"""What the OpenAPI documents promise of free text (names, streets, cities) is
what the check does: schemathesis generates requests from the documents, and a
schema-valid blank city (" ") was once refused with a 422."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contracts.fields import PRINTABLE_PATTERN, TEXT_MAX_LENGTH, TEXT_PATTERN
from ordersaga.runtime.fields import Text

TEXT = TypeAdapter(Text)
# Every kind of character that matters here: whitespace of each kind, controls,
# the byte-order mark, letters.
SPECIAL = st.sampled_from(
    [" ", "\t", "\n", "\xa0", "\u1680", "\u2003", "\u2028", "\u3000", "\ufeff", "\x85", "\x7f"]
)
# Blank and control-only values as often as any others.
VALUES = st.text(SPECIAL, max_size=4) | st.text(SPECIAL | st.characters(codec="utf-8"), max_size=12)


def accepted(value: str) -> bool:
    try:
        TEXT.validate_python(value)
    except ValidationError:
        return False
    return True


@given(VALUES)
def test_a_value_the_document_allows_is_accepted(value: str) -> None:
    # Not the converse: the check strips surrounding whitespace first, so it
    # takes "Ada\r" as "Ada", which the document does not promise.
    if re.fullmatch(TEXT_PATTERN, value):
        assert accepted(value), value
    if accepted(value):
        assert re.fullmatch(TEXT_PATTERN, value.strip()), value


def test_blank_values_are_refused_by_the_document_too() -> None:
    for blank in [" ", "   ", "\u3000", "\xa0 \u2003"]:
        assert re.fullmatch(TEXT_PATTERN, blank) is None
        assert not accepted(blank)
    assert accepted("Ada Lovelace") and re.fullmatch(TEXT_PATTERN, "Ada Lovelace")
    assert re.fullmatch(PRINTABLE_PATTERN, "") and not re.fullmatch(PRINTABLE_PATTERN, "a\nb")
    assert accepted("x" * TEXT_MAX_LENGTH)
