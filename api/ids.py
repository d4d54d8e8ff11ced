"""Order ids, request fingerprints and the identifier formats the API accepts.

An order id is derived, never generated: the same caller sending the same
Idempotency-Key always names the same workflow, so Temporal's "one workflow per
id" rule is what makes POST /orders idempotent, with no database of our own.

Keys are scoped per customer (as payment APIs scope them per account): the
caller of POST /orders is the customer named in the body, so two customers may
use the same key without colliding, and one customer reusing a key reaches its
own earlier order. The id reveals nothing about either input (it is a hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

ORDER_ID_PREFIX = "ord_"
# 26 base32 characters = 130 bits of the hash: collisions are not a concern.
_ORDER_ID_HASH_CHARS = 26

# Identifiers that end up in workflow ids, search attributes and visibility
# queries: a closed, quote-free alphabet, so none of them can break out of a
# visibility query string, and no e-mail address (PII) fits.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
# Also accepts ids that were not derived here (tests, operators starting
# workflows by hand) while keeping anything odd away from Temporal.
ORDER_ID_PATTERN = r"^ord_[A-Za-z0-9_-]{1,64}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
_ORDER_ID = re.compile(ORDER_ID_PATTERN)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7E]+$"


def derive_order_id(customer_id: str, idempotency_key: str) -> str:
    # The newline cannot occur in either part (both charsets exclude it), so
    # ("a", "b\nc") and ("a\nb", "c") cannot hash the same.
    digest = hashlib.sha256(f"{customer_id}\n{idempotency_key}".encode()).digest()
    encoded = base64.b32encode(digest).decode("ascii").lower()
    return ORDER_ID_PREFIX + encoded[:_ORDER_ID_HASH_CHARS]


def request_fingerprint(canonical_body: dict[str, Any]) -> str:
    """sha256 of the body as canonical JSON: equal requests, equal fingerprints,
    whatever the key order or whitespace the client sent."""
    text = json.dumps(canonical_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_problem(key: str) -> str | None:
    """Why a header value is not a usable Idempotency-Key, or None when it is."""
    if not key:
        return "the Idempotency-Key header is empty"
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        return f"the Idempotency-Key header is longer than {IDEMPOTENCY_KEY_MAX_LENGTH} characters"
    # Starlette decodes header bytes as latin-1, so a UTF-8 key shows up here
    # as characters above 0x7e.
    if not all(0x21 <= ord(char) <= 0x7E for char in key):
        return "the Idempotency-Key header may contain only visible ASCII characters"
    return None


def is_safe_id(value: str) -> bool:
    return _SAFE_ID.fullmatch(value) is not None


def is_order_id(value: str) -> bool:
    return _ORDER_ID.fullmatch(value) is not None
