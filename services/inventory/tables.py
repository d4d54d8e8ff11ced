"""The inventory database's tables (SQLAlchemy Core). Migrations create them;
these definitions are what queries and autogenerate compare against."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    String,
    Table,
)

from services.common.repository import service_metadata

metadata = service_metadata()

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    # Minor units of the catalog's currency; a reservation copies it per line.
    Column("price_cents", BigInteger, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    # The last line of defence: no interleaving of requests may oversell.
    CheckConstraint("available >= 0", name="available_not_negative"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    CheckConstraint("price_cents > 0", name="price_positive"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", String(64), primary_key=True),
    Column("order_id", String(255), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    # The currency its lines' prices are in: the catalog's when it was made.
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("state IN ('reserved', 'released', 'committed')", name="state_known"),
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column(
        "reservation_id",
        String(64),
        ForeignKey("reservations.reservation_id"),
        primary_key=True,
    ),
    Column("sku", String(64), ForeignKey("products.sku"), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    # The catalog's price when the reservation was made: a later change of the
    # catalog's price does not change what this order pays.
    Column("unit_price_cents", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price_cents > 0", name="unit_price_positive"),
)
