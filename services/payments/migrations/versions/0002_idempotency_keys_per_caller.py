"""Idempotency keys belong to the caller that sent them.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from services.common.migrations import scope_idempotency_keys_by_caller, unscope_idempotency_keys

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    scope_idempotency_keys_by_caller()


def downgrade() -> None:
    unscope_idempotency_keys()
