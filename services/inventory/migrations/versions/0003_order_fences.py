"""Order fences: once an order's reservations are released, a reservation for it
that lands late is refused instead of holding stock (services.common.fences)."""

from services.common.migrations import create_order_fences_table, drop_order_fences_table

revision = "0003"
down_revision = "0002"
upgrade = create_order_fences_table
downgrade = drop_order_fences_table
