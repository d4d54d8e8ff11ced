"""Task queue names. Each domain has its own so its workers deploy and scale alone."""

ORDERS = "orders"
INVENTORY = "inventory"
PAYMENTS = "payments"
SHIPPING = "shipping"

ALL_QUEUES = (ORDERS, INVENTORY, PAYMENTS, SHIPPING)
