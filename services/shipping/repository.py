"""SQL adapters for the shipping domain's repository, and its unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Row, Table

from contracts.orders import Address
from services.common.db import SqlUnitOfWork
from services.common.driver_sql import DriverConnection
from services.common.fences import SqlFences
from services.common.repository import LineStore, SqlOrderResources
from services.shipping.domain import Shipment, ShipmentState
from services.shipping.tables import shipment_lines, shipments


class SqlShipmentRepository(SqlOrderResources[Shipment]):
    table: ClassVar[Table] = shipments

    def __init__(self, connection: DriverConnection) -> None:
        super().__init__(connection)
        self._lines = LineStore(connection, shipment_lines, "shipment_id")

    async def add(self, resource: Shipment) -> None:
        await super().add(resource)
        await self._lines.add(resource.shipment_id, resource.lines)

    def _to_row(self, resource: Shipment) -> dict[str, Any]:
        address = resource.address
        return {
            "shipment_id": resource.shipment_id,
            "order_id": resource.order_id,
            "state": resource.state.value,
            "recipient_name": address.name,
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "postal_code": address.postal_code,
            "country": address.country,
        }

    async def _from_rows(self, rows: Sequence[Row[Any]]) -> list[Shipment]:
        lines = await self._lines.of([row.shipment_id for row in rows])
        return [
            Shipment(
                shipment_id=row.shipment_id,
                order_id=row.order_id,
                address=Address(
                    name=row.recipient_name,
                    line1=row.line1,
                    line2=row.line2,
                    city=row.city,
                    postal_code=row.postal_code,
                    country=row.country,
                ),
                lines=lines.get(row.shipment_id, []),
                state=ShipmentState(row.state),
            )
            for row in rows
        ]


class SqlShippingUnitOfWork(SqlUnitOfWork):
    shipments: SqlShipmentRepository
    fences: SqlFences

    def _bind(self, connection: DriverConnection) -> None:
        self.shipments = SqlShipmentRepository(connection)
        self.fences = SqlFences(connection)
