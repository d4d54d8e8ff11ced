"""One set of field rules for everything an order carries.

The API checks a request against these at the edge, and every service checks
its own requests against the same values, so an order the API accepts is never
refused by a service for its shape. Plain constants (patterns, bounds, sets):
the API and the services each build their pydantic types from them.
"""

from __future__ import annotations

# A SKU: what a catalog row, a log line and a visibility query can all hold.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
SKU_MAX_LENGTH = 64

# Ids that end up in workflow ids, search attributes and visibility queries
# (customer ids): a closed, quote-free alphabet, so none of them can break out
# of a query string and no e-mail address (PII) fits.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"

MAX_LINES_PER_ORDER = 100
MAX_QUANTITY_PER_LINE = 1000

# Prices live in the catalog, in minor units of the catalog's currency. With at
# most 100 lines of 1000 units, the largest possible order is exactly
# MAX_ORDER_TOTAL_CENTS, and the smallest is one cent: no order can be free.
MIN_UNIT_PRICE_CENTS = 1
MAX_UNIT_PRICE_CENTS = 10_000_000
MAX_ORDER_TOTAL_CENTS = MAX_LINES_PER_ORDER * MAX_QUANTITY_PER_LINE * MAX_UNIT_PRICE_CENTS
# What one customer may have captured and not refunded is configured
# (ORDERSAGA_PAYMENTS_CUSTOMER_LIMIT_CENTS) up to a thousand of the largest
# orders: far inside the 64-bit sums the payments database keeps.
MAX_CUSTOMER_LIMIT_CENTS = 1000 * MAX_ORDER_TOTAL_CENTS

# Printable: no C0 or C1 control character, nor DEL. (A lone UTF-16 surrogate
# is not a valid string at all and is refused before any pattern.)
_PRINTABLE = r"[^\x00-\x1F\x7F-\x9F]"
# Printable and not whitespace (Unicode's White_Space, spelled out so that JSON
# Schema's, Python's and Rust's regexes agree, as they do not on `\s`).
_VISIBLE = r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
# Text that may be empty: a second address line, an operator's note.
PRINTABLE_PATTERN = rf"^{_PRINTABLE}*$"
# Free text from people (name, street, city): printable, surrounding whitespace
# stripped, and not blank. The pattern itself says "not blank" (one visible
# character), so the OpenAPI documents promise what the check does after
# stripping: with `+` alone a schema-valid " " was a 422.
TEXT_PATTERN = rf"^{_PRINTABLE}*{_VISIBLE}{_PRINTABLE}*$"
TEXT_MAX_LENGTH = 200
CITY_MAX_LENGTH = 100

POSTAL_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,19}$"
POSTAL_CODE_MAX_LENGTH = 20

# ISO 3166-1 alpha-2, upper case.
COUNTRY_PATTERN = r"^[A-Z]{2}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# Payment tokens are opaque to us, but bounded and printable.
PAYMENT_TOKEN_PATTERN = r"^[\x21-\x7E]{1,255}$"

# ISO 4217 codes of currencies in use (funds and precious metals excluded).
ISO_4217_CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB
    BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK
    LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF
    YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 - a table is easier to check than 180 quoted strings
)


def is_iso_currency(code: str) -> bool:
    return code in ISO_4217_CURRENCIES
