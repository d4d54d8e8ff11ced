"""Payment rules, free of any database or web framework.

There is no real card network behind this service; two test tokens stand in for
what an issuer can do: `tok_chargeDeclined` is declined outright, and a charge
made with `tok_refundFail` is captured but its refund is refused later. Tokens
are never stored: the charge only remembers whether its issuer refuses refunds.

The functions take a unit of work and do not commit it (see the inventory
domain for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from contracts import errors
from services.common.domain import (
    DomainError,
    Fences,
    OrderResources,
    admit_once,
    locked,
    new_id,
)

DECLINED_TOKEN = "tok_chargeDeclined"
REFUND_REFUSED_TOKEN = "tok_refundFail"


class PaymentDeclined(DomainError):
    code = errors.PAYMENT_DECLINED


class RefundRefused(DomainError):
    code = errors.REFUND_REFUSED


class ChargeState(StrEnum):
    CAPTURED = "captured"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class PaymentPolicy:
    # What one customer may have captured and not refunded, over all currencies.
    customer_limit_cents: int


@dataclass
class Charge:
    charge_id: str
    order_id: str
    customer_id: str
    amount_cents: int
    currency: str
    state: ChargeState = ChargeState.CAPTURED
    issuer_refuses_refund: bool = False

    def refund(self) -> bool:
        """Mark refunded; True when money goes back (not refunded before)."""
        if self.state is ChargeState.REFUNDED:
            return False
        if self.issuer_refuses_refund:
            raise RefundRefused(f"the card issuer refused to refund charge {self.charge_id}")
        self.state = ChargeState.REFUNDED
        return True


class ExposureRepository(Protocol):
    """What each customer has captured and not refunded."""

    async def add_within_limit(self, customer_id: str, amount_cents: int, limit_cents: int) -> bool:
        """Add the amount, atomically, unless the total would pass the limit."""
        ...

    async def subtract(self, customer_id: str, amount_cents: int) -> None: ...


class PaymentsUnitOfWork(Protocol):
    @property
    def charges(self) -> OrderResources[Charge]: ...

    @property
    def exposure(self) -> ExposureRepository: ...

    @property
    def fences(self) -> Fences: ...


async def charge(
    uow: PaymentsUnitOfWork,
    *,
    order_id: str,
    customer_id: str,
    amount_cents: int,
    currency: str,
    payment_token: str,
    policy: PaymentPolicy,
) -> Charge:
    """Capture the amount, or refuse with PAYMENT_DECLINED (or ORDER_FENCED).
    An order is charged once: asked again under another key, the same charge
    gets the captured one, and anything else INVALID_STATE."""
    captured = await admit_once(
        uow.fences,
        uow.charges,
        order_id,
        kind="charge",
        same_request=lambda made: (
            made.state is ChargeState.CAPTURED
            and (made.customer_id, made.amount_cents, made.currency)
            == (customer_id, amount_cents, currency)
        ),
    )
    if captured is not None:
        return captured
    if payment_token == DECLINED_TOKEN:
        raise PaymentDeclined("the card issuer declined the charge")
    if not await uow.exposure.add_within_limit(
        customer_id, amount_cents, policy.customer_limit_cents
    ):
        raise PaymentDeclined(
            f"customer {customer_id} would pass the limit of {policy.customer_limit_cents} "
            "cents in open charges"
        )
    made = Charge(
        charge_id=new_id("ch"),
        order_id=order_id,
        customer_id=customer_id,
        amount_cents=amount_cents,
        currency=currency,
        issuer_refuses_refund=payment_token == REFUND_REFUSED_TOKEN,
    )
    await uow.charges.add(made)
    return made


async def refund(uow: PaymentsUnitOfWork, charge_id: str) -> Charge:
    """Give the money back. Refunding twice refunds once."""
    found = await locked(uow.charges, charge_id, "charge")
    if found.refund():
        await uow.exposure.subtract(found.customer_id, found.amount_cents)
        await uow.charges.save_state(found)
    return found
