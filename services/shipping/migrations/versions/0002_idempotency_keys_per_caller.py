"""Shipments' idempotency keys belong to the caller that sent them, now that
callers authenticate: a key one caller chose never answers another's request."""

from services.common.migrations import scope_idempotency_keys_by_caller, unscope_idempotency_keys

revision = "0002"
down_revision = "0001"
upgrade = scope_idempotency_keys_by_caller
downgrade = unscope_idempotency_keys
