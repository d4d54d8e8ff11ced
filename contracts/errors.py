"""Stable error codes: the services answer with them, activities raise them as
ApplicationError types, and the workflow decides on them."""

OUT_OF_STOCK = "OUT_OF_STOCK"
UNKNOWN_SKU = "UNKNOWN_SKU"
PAYMENT_DECLINED = "PAYMENT_DECLINED"
ADDRESS_UNDELIVERABLE = "ADDRESS_UNDELIVERABLE"
REFUND_REFUSED = "REFUND_REFUSED"
# The reserved total differs from what the customer said they expect to pay,
# or the order's currency is not the catalog's.
PRICE_CHANGED = "PRICE_CHANGED"
# A compensation asked to undo something that has moved past undoing, such as
# releasing a reservation that was already committed.
INVALID_STATE = "INVALID_STATE"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
# A forward request for an order whose compensation has already run in that
# service: the order gave up on the step, so the request took no effect. Not a
# business refusal (the customer's order was not refused for it; it had ended
# already), and nothing to undo.
ORDER_FENCED = "ORDER_FENCED"
NOT_FOUND = "NOT_FOUND"
# Any other 4xx: the request itself is wrong, so retrying cannot help.
REQUEST_REJECTED = "REQUEST_REJECTED"
# 5xx, timeouts, refused connections: retried by Temporal.
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INJECTED_FAULT = "INJECTED_FAULT"
# The request reached the service, or got through it, after its caller had
# stopped waiting (the Request-Timeout it sent): nothing was committed, and a
# retry under the same key runs it again. Retryable like any lost answer.
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"

# Refusals by a domain: the order cannot go on, compensate at once.
BUSINESS_REFUSALS = frozenset(
    {OUT_OF_STOCK, UNKNOWN_SKU, PAYMENT_DECLINED, ADDRESS_UNDELIVERABLE, PRICE_CHANGED}
)

# Errors an activity raises as non-retryable.
NON_RETRYABLE = frozenset(
    {
        *BUSINESS_REFUSALS,
        REFUND_REFUSED,
        INVALID_STATE,
        IDEMPOTENCY_KEY_REUSED,
        REQUEST_REJECTED,
        ORDER_FENCED,
    }
)

# What a customer is told about an order that ended for one of these reasons.
# Stock counts, limits and service internals stay in the operator's view.
PUBLIC_REASONS: dict[str, str] = {
    OUT_OF_STOCK: "some items are out of stock",
    UNKNOWN_SKU: "some items are not in the catalog",
    PAYMENT_DECLINED: "the card was declined",
    ADDRESS_UNDELIVERABLE: "we can't ship to that country",
    PRICE_CHANGED: "the price is not the one you expected",
}
PUBLIC_REASON_OTHER = "we could not complete the order; nothing was charged or shipped"
PUBLIC_REASON_CANCELLED = "the order was cancelled"


def public_reason(code: str | None) -> str:
    return PUBLIC_REASONS.get(code or "", PUBLIC_REASON_OTHER)
