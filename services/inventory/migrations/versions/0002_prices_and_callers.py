"""Prices: products get a price, reservations fix it per line in a currency;
idempotency keys belong to the caller that sent them."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.expression import Executable

from services.common.migrations import scope_idempotency_keys_by_caller, unscope_idempotency_keys

revision = "0002"
down_revision = "0001"

# Frozen here like any migration: the seed catalog's prices when prices came
# in. A product the catalog does not know (added by an operator) gets the
# default price until an operator sets its own.
CATALOG_PRICES = {
    "sku_mug": 1250,
    "sku_tshirt": 2000,
    "sku_poster": 1500,
    "sku_sticker": 300,
    "sku_hoodie": 4500,
}
DEFAULT_PRICE_CENTS = 1000
# The catalog had no prices, so no currency, before this revision; EUR was the
# default catalog currency when it came.
EXISTING_RESERVATIONS_CURRENCY = "EUR"


def upgrade() -> None:
    scope_idempotency_keys_by_caller()

    products = sa.table("products", sa.column("sku"), sa.column("price_cents"))
    add_price_column(
        "products",
        "price_cents",
        check="ck_products_price_positive",
        fill=[
            products.update().where(products.c.sku == sku).values(price_cents=price)
            for sku, price in CATALOG_PRICES.items()
        ],
    )

    with op.batch_alter_table("reservations") as batch:
        batch.add_column(
            sa.Column(
                "currency",
                sa.String(length=3),
                nullable=False,
                server_default=EXISTING_RESERVATIONS_CURRENCY,
            )
        )
    with op.batch_alter_table("reservations") as batch:
        batch.alter_column("currency", server_default=None, existing_type=sa.String(length=3))

    add_price_column(
        "reservation_lines",
        "unit_price_cents",
        check="ck_reservation_lines_unit_price_positive",
        # Existing reservations take their products' prices as of now.
        fill=[
            "UPDATE reservation_lines SET unit_price_cents = "
            "(SELECT price_cents FROM products WHERE products.sku = reservation_lines.sku)"
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("reservation_lines") as batch:
        batch.drop_constraint(op.f("ck_reservation_lines_unit_price_positive"), type_="check")
        batch.drop_column("unit_price_cents")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("currency")
    with op.batch_alter_table("products") as batch:
        batch.drop_constraint(op.f("ck_products_price_positive"), type_="check")
        batch.drop_column("price_cents")
    unscope_idempotency_keys()


def add_price_column(
    table: str, column: str, *, check: str, fill: Sequence[Executable | str]
) -> None:
    """A positive price column on a table that may have rows already: they get
    the default price, then `fill` sets the prices it knows; then the default
    goes, so that a new row always states its price."""
    with op.batch_alter_table(table) as batch:
        batch.add_column(
            sa.Column(
                column, sa.BigInteger(), nullable=False, server_default=str(DEFAULT_PRICE_CENTS)
            )
        )
    for statement in fill:
        op.execute(statement)
    with op.batch_alter_table(table) as batch:
        batch.alter_column(column, server_default=None, existing_type=sa.BigInteger())
        batch.create_check_constraint(op.f(check), f"{column} > 0")
