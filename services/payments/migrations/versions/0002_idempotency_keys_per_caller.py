"""Idempotency keys belong to the caller that sent them: callers authenticate
now and choose their keys, so one caller's key must not replay another's charge."""

from services.common.migrations import scope_idempotency_keys_by_caller, unscope_idempotency_keys

revision = "0002"
down_revision = "0001"
upgrade = scope_idempotency_keys_by_caller
downgrade = unscope_idempotency_keys
