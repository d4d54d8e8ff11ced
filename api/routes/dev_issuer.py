"""The dev issuer's public keys, served by the API in dev mode only.

`make dev` is its own token issuer (ordersaga.runtime.auth.DevIssuer): anyone testing
against it can check its tokens with this JWKS, as they would a real
provider's. Outside dev mode the API trusts a configured provider and serves
no keys.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ordersaga.runtime.auth import DevIssuer

JWKS_PATH = "/.well-known/jwks.json"


def dev_issuer_router(issuer: DevIssuer) -> APIRouter:
    router = APIRouter(tags=["dev issuer"])
    jwks = issuer.jwks()

    @router.get(JWKS_PATH, summary="The dev issuer's public keys (dev mode only)")
    async def dev_issuer_jwks() -> dict[str, Any]:
        return jwks

    return router
