"""The payments database's tables (SQLAlchemy Core). Migrations create them;
these definitions are what queries and autogenerate compare against."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    String,
    Table,
)

from services.common.repository import service_metadata

metadata = service_metadata()

charges = Table(
    "charges",
    metadata,
    Column("charge_id", String(64), primary_key=True),
    Column("order_id", String(255), nullable=False, index=True),
    Column("customer_id", String(255), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(16), nullable=False),
    # In place of the token, which is never stored.
    Column("issuer_refuses_refund", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount_cents > 0", name="amount_positive"),
    CheckConstraint("state IN ('captured', 'refunded')", name="state_known"),
)

# One row per customer, so that concurrent charges of one customer queue on
# its row and the limit holds (a SUM over charges could not be locked).
customer_exposure = Table(
    "customer_exposure",
    metadata,
    Column("customer_id", String(255), primary_key=True),
    Column("outstanding_cents", BigInteger, nullable=False),
    CheckConstraint("outstanding_cents >= 0", name="outstanding_not_negative"),
)
