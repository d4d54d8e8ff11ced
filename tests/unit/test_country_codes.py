"""The country an address names: an ISO 3166-1 alpha-2 code assigned to a
country, checked by the API and the shipping service with one rule."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from ordersaga.runtime.fields import CountryCode, country_codes

COUNTRY = TypeAdapter(CountryCode)


@pytest.mark.parametrize("code", ["GB", "DE", "AQ", "KP", "US", "XK"])
def test_a_country_is_accepted(code: str) -> None:
    assert COUNTRY.validate_python(code) == code


@pytest.mark.parametrize("code", ["XX", "ZZ", "QM", "AA", "EU", "UK"])
def test_a_code_of_no_country_is_refused(code: str) -> None:
    """Shaped like a country code, but ISO assigns it to none (or, like EU and
    UK, reserves it for something else)."""
    with pytest.raises(ValidationError, match="not a country"):
        COUNTRY.validate_python(code)


def test_the_schema_lists_every_country_and_nothing_else() -> None:
    schema = COUNTRY.json_schema()
    assert schema["enum"] == sorted(country_codes())
    assert len(schema["enum"]) == 250  # 249 officially assigned, and XK
    assert "XX" not in schema["enum"]
    assert schema["pattern"] == "^[A-Z]{2}$"
