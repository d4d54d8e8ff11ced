"""The payload encryption keyring: key ids and their AES-256 keys, as settings give them.

Standard library only, so settings can validate a keyring at start-up without
importing the cryptography stack. The codec itself is ordersaga.runtime.codec.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

KEY_BYTES = 32  # AES-256
# Written into every payload's metadata in the clear: short, and nothing secret.
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_ID_RULE = "a key id is 1-64 of A-Z a-z 0-9 . _ - and starts with a letter or digit"
# The one key dev mode makes up and keeps in its data folder.
DEV_KEY_ID = "dev"


class KeyringError(ValueError):
    """A keyring that cannot be used; the message never contains key material."""


@dataclass(frozen=True)
class Keyring:
    """Every key that may decrypt, and the id of the one that encrypts."""

    current_key_id: str
    keys: Mapping[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("the keyring holds no key")
        for key_id, key in self.keys.items():
            _check_key_id(key_id)
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        if self.current_key_id not in self.keys:
            raise KeyringError(
                f"current key id {self.current_key_id!r} is not in the keyring "
                f"(which holds {', '.join(sorted(self.keys))})"
            )

    @classmethod
    def parse(cls, text: str, current_key_id: str | None = None) -> Keyring:
        """`k2:<base64 of 32 bytes>,k1:<base64>`: the first key (or `current_key_id`)
        encrypts, all of them decrypt."""
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(text.split(","), start=1):
            entry = entry.strip()
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep:
                raise KeyringError(f"entry {position} is not <key id>:<base64 key>")
            if not KEY_ID_PATTERN.match(key_id):
                # Not echoed: a key pasted where its id belongs would be printed.
                raise KeyringError(f"entry {position}: {KEY_ID_RULE}")
            if key_id in keys:
                raise KeyringError(f"key id {key_id!r} appears twice")
            try:
                keys[key_id] = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"key {key_id!r} is not valid base64") from None
        if not keys:
            raise KeyringError("no key given; expected <key id>:<base64 key>[,...]")
        return cls(current_key_id or next(iter(keys)), keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys


def _check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.match(key_id):
        raise KeyringError(KEY_ID_RULE)


def format_keyring(keys: Mapping[str, bytes]) -> str:
    """The settings form of `keys`, first one current (for tools and tests)."""
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items())
