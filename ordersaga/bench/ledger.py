"""What the services' ledgers must hold for an order, given how it ended.

COMPLETED: one captured charge of the catalog price, one shipment created, one
reservation committed. FAILED (the compensation path: shipping refused the
address): the charge refunded, no shipment, the reservation released.
CANCELLED (a customer's cancel while a step was in flight): whichever steps had
taken effect are undone, so no captured charge, no live shipment, no held or
committed reservation, and at most one of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.orders import OrderStatus

Items = Sequence[dict[str, Any]]


def ledger_problems(
    order_id: str,
    ended: str,
    price_cents: int,
    *,
    charges: Items,
    shipments: Items,
    reservations: Items,
) -> list[str]:
    charged = [(c["state"], c["amount_cents"]) for c in charges]
    shipped = [s["state"] for s in shipments]
    reserved = [r["state"] for r in reservations]
    if ended == OrderStatus.CANCELLED.value:
        wanted = {
            "charges": (charged, [("refunded", price_cents)]),
            "shipments": (shipped, ["cancelled"]),
            "reservations": (reserved, ["released"]),
        }
        return [
            f"{order_id}: {name} {found}, expected none or {undone}"
            for name, (found, undone) in wanted.items()
            if found not in ([], undone)
        ]
    happy = ended == OrderStatus.COMPLETED.value
    want_charge = [("captured" if happy else "refunded", price_cents)]
    want_shipments = ["created"] if happy else []
    want_reservation = ["committed" if happy else "released"]
    problems = []
    if charged != want_charge:
        problems.append(f"{order_id}: charges {list(charges)}, expected one {want_charge[0][0]}")
    if shipped != want_shipments:
        problems.append(f"{order_id}: shipments {list(shipments)}, expected {want_shipments}")
    if reserved != want_reservation:
        problems.append(
            f"{order_id}: reservations {list(reservations)}, expected one {want_reservation[0]}"
        )
    return problems
