"""Custom search attributes the Web UI lists and filters orders by.

Every Temporal server the workflow runs on must have these registered first:
upserting an unregistered attribute fails the workflow task again and again.
"""

ORDER_STATUS = "OrderStatus"
CUSTOMER_ID = "CustomerId"
ORDER_TOTAL_CENTS = "OrderTotalCents"

# name -> Temporal indexed value type, as `temporal server start-dev --search-attribute` takes it.
SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    ORDER_STATUS: "Keyword",
    CUSTOMER_ID: "Keyword",
    ORDER_TOTAL_CENTS: "Int",
}
