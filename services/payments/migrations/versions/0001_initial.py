"""Charges, customer exposure, idempotency keys."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.migrations import create_idempotency_keys_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "charges",
        sa.Column("charge_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("issuer_refuses_refund", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_charges_amount_positive")),
        sa.CheckConstraint(
            "state IN ('captured', 'refunded')", name=op.f("ck_charges_state_known")
        ),
        sa.PrimaryKeyConstraint("charge_id", name=op.f("pk_charges")),
    )
    op.create_index(op.f("ix_charges_order_id"), "charges", ["order_id"], unique=False)
    op.create_index(op.f("ix_charges_customer_id"), "charges", ["customer_id"], unique=False)
    op.create_table(
        "customer_exposure",
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("outstanding_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "outstanding_cents >= 0",
            name=op.f("ck_customer_exposure_outstanding_not_negative"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_exposure")),
    )
    create_idempotency_keys_table()


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("customer_exposure")
    op.drop_index(op.f("ix_charges_customer_id"), table_name="charges")
    op.drop_index(op.f("ix_charges_order_id"), table_name="charges")
    op.drop_table("charges")
