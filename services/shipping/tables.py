"""The shipping database's tables (SQLAlchemy Core). Migrations create them;
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

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("order_id", String(255), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("recipient_name", String(200), nullable=False),
    Column("line1", String(200), nullable=False),
    Column("line2", String(200), nullable=True),
    Column("city", String(200), nullable=False),
    Column("postal_code", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("state IN ('created', 'cancelled')", name="state_known"),
)

shipment_lines = Table(
    "shipment_lines",
    metadata,
    Column("shipment_id", String(64), ForeignKey("shipments.shipment_id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)
