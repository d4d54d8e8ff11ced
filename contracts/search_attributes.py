"""Custom search attributes the Web UI lists and filters orders by.

Every Temporal server the workflow runs on must have these registered first:
upserting an unregistered attribute fails the workflow task again and again.
"""

ORDER_STATUS = "OrderStatus"
CUSTOMER_ID = "CustomerId"
ORDER_TOTAL_CENTS = "OrderTotalCents"
# The forward step that failed, e.g. "charge_payment": set on every FAILED order
# (and on a CANCELLED one whose step in flight failed too). Added with a
# workflow patch: see docs/changing-workflows.md.
FAILED_STEP = "FailedStep"

# name -> Temporal indexed value type, as `temporal server start-dev --search-attribute` takes it.
SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    ORDER_STATUS: "Keyword",
    CUSTOMER_ID: "Keyword",
    ORDER_TOTAL_CENTS: "Int",
    FAILED_STEP: "Keyword",
}
