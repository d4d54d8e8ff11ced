"""Order fences: once an order's charges are refunded, a charge for it that lands
late is refused instead of taking money nobody gives back (services.common.fences)."""

from services.common.migrations import create_order_fences_table, drop_order_fences_table

revision = "0003"
down_revision = "0002"
upgrade = create_order_fences_table
downgrade = drop_order_fences_table
