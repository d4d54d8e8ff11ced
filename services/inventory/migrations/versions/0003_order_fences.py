"""Order fences: once an order's compensation has run here, no forward request
for it takes effect (services.common.fences).

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

from services.common.migrations import create_order_fences_table, drop_order_fences_table

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    create_order_fences_table()


def downgrade() -> None:
    drop_order_fences_table()
