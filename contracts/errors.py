"""Stable error codes: the services answer with them, activities raise them as
ApplicationError types, and the workflow decides on them."""

OUT_OF_STOCK = "OUT_OF_STOCK"
UNKNOWN_SKU = "UNKNOWN_SKU"
PAYMENT_DECLINED = "PAYMENT_DECLINED"
ADDRESS_UNDELIVERABLE = "ADDRESS_UNDELIVERABLE"
REFUND_REFUSED = "REFUND_REFUSED"
# A compensation asked to undo something that has moved past undoing, such as
# releasing a reservation that was already committed.
INVALID_STATE = "INVALID_STATE"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
NOT_FOUND = "NOT_FOUND"
# Any other 4xx: the request itself is wrong, so retrying cannot help.
REQUEST_REJECTED = "REQUEST_REJECTED"
# 5xx, timeouts, refused connections: retried by Temporal.
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INJECTED_FAULT = "INJECTED_FAULT"

# Refusals by a domain: the order cannot go on, compensate at once.
BUSINESS_REFUSALS = frozenset({OUT_OF_STOCK, UNKNOWN_SKU, PAYMENT_DECLINED, ADDRESS_UNDELIVERABLE})

# Errors an activity raises as non-retryable.
NON_RETRYABLE = frozenset(
    {
        *BUSINESS_REFUSALS,
        REFUND_REFUSED,
        INVALID_STATE,
        IDEMPOTENCY_KEY_REUSED,
        REQUEST_REJECTED,
    }
)
