"""The stub domain's activities: one, calling its service through the client
the worker gives it."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.http import ServiceClient


@dataclass(frozen=True)
class AwardPointsInput:
    order_id: str
    points: int


class LoyaltyActivities:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    @activity.defn(name="award_points")
    async def award_points(self, request: AwardPointsInput) -> None:
        await self.client.create_json(
            "/awards",
            idempotency_key=f"{request.order_id}:award_points",
            json={"order_id": request.order_id, "points": request.points},
        )

    def not_an_activity(self) -> None:
        """Public, but no @activity.defn: the worker must leave it out."""


class NoActivities:
    """Takes the client like an activities class, but none of its methods is one."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def award_points(self, request: AwardPointsInput) -> None:
        """Lacks @activity.defn."""
