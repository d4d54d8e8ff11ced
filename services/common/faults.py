"""Injected latency and errors, for demos and chaos tests. Off by default.

The state lives in the app (one process); each replica is configured on its own.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from contracts import errors
from services.common.errors import ServiceError
from services.common.schemas import PartialUpdate

MAX_LATENCY_MS = 60_000


class FaultsUpdate(PartialUpdate):
    """What to change; at least one. What the body leaves out stays as it is."""

    error_rate: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    latency_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)


class FaultsPublic(BaseModel):
    error_rate: float
    latency_ms: int


@dataclass
class FaultInjector:
    error_rate: float = 0.0
    latency_ms: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def configure(self, update: FaultsUpdate) -> None:
        if update.error_rate is not None:
            self.error_rate = update.error_rate
        if update.latency_ms is not None:
            self.latency_ms = update.latency_ms

    def clear(self) -> None:
        self.error_rate = 0.0
        self.latency_ms = 0

    def public(self) -> FaultsPublic:
        return FaultsPublic(error_rate=self.error_rate, latency_ms=self.latency_ms)

    @property
    def configured(self) -> bool:
        """Whether `apply` may delay or fail a request."""
        return bool(self.latency_ms or self.error_rate)

    async def apply(self) -> None:
        """Delay, then maybe fail, before the endpoint does anything at all."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.error_rate and self._random.random() < self.error_rate:
            raise ServiceError(
                errors.INJECTED_FAULT,
                f"fault injected by the operator (error_rate={self.error_rate})",
            )
