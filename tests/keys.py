"""The fixed payload encryption keys of the tests (never used outside them)."""

from __future__ import annotations

from ordersaga.runtime.keyring import Keyring, format_keyring

TEST_KEY_ID = "test"
TEST_KEYRING = Keyring(TEST_KEY_ID, {TEST_KEY_ID: bytes(range(32))})
# The same keyring as ORDERSAGA_CODEC_KEYS spells it, for processes a test starts.
TEST_CODEC_KEYS = format_keyring(TEST_KEYRING.keys)
