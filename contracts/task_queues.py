"""Task queue names. Each domain has its own so its workers deploy and scale alone.

Every queue a worker can serve: contracts.domains.DOMAINS.task_queues.
"""

ORDERS = "orders"
INVENTORY = "inventory"
PAYMENTS = "payments"
SHIPPING = "shipping"
