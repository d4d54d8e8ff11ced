"""Typed keys of the custom search attributes, for the workflow that upserts them
and the API that sets them at start and reads them back from visibility.

The names live in contracts (stdlib only); the typed keys need temporalio, so
they live here, next to the workflow, where the API may import them.
"""

from temporalio.common import SearchAttributeKey

from contracts.search_attributes import CUSTOMER_ID, FAILED_STEP, ORDER_STATUS, ORDER_TOTAL_CENTS

ORDER_STATUS_KEY = SearchAttributeKey.for_keyword(ORDER_STATUS)
CUSTOMER_ID_KEY = SearchAttributeKey.for_keyword(CUSTOMER_ID)
ORDER_TOTAL_CENTS_KEY = SearchAttributeKey.for_int(ORDER_TOTAL_CENTS)
FAILED_STEP_KEY = SearchAttributeKey.for_keyword(FAILED_STEP)

# Every custom attribute, for registering them on a server (tests, tooling).
ORDER_SEARCH_ATTRIBUTES = (
    ORDER_STATUS_KEY,
    CUSTOMER_ID_KEY,
    ORDER_TOTAL_CENTS_KEY,
    FAILED_STEP_KEY,
)
