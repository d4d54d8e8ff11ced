"""Products, reservations and their lines, idempotency keys."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.migrations import create_idempotency_keys_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("available >= 0", name=op.f("ck_products_available_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_products_reserved_not_negative")),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('reserved', 'released', 'committed')",
            name=op.f("ck_reservations_state_known"),
        ),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_reservations")),
    )
    op.create_index(op.f("ix_reservations_order_id"), "reservations", ["order_id"], unique=False)
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservation_lines_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.reservation_id"],
            name=op.f("fk_reservation_lines_reservation_id_reservations"),
        ),
        sa.ForeignKeyConstraint(
            ["sku"], ["products.sku"], name=op.f("fk_reservation_lines_sku_products")
        ),
        sa.PrimaryKeyConstraint("reservation_id", "sku", name=op.f("pk_reservation_lines")),
    )
    create_idempotency_keys_table()


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("reservation_lines")
    op.drop_index(op.f("ix_reservations_order_id"), table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("products")
