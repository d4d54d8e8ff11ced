"""Payload encryption: AES-256-GCM under a rotating keyring, as a Temporal PayloadCodec.

Every payload a client or worker of ordersaga writes (workflow and activity
inputs and results, failures with their messages and stack traces, memo, query
and update arguments and results, signal arguments, summaries) leaves the
process encrypted; Temporal's server, its database and anyone with its Web UI
or gRPC port see only ciphertext. Search attributes are not payloads of the
codec: they stay readable and carry no personal data.

Each payload is serialized whole (metadata and data) and sealed with a fresh
96-bit random nonce under the current key. The result carries, in the clear,
the encoding `binary/encrypted` and the key id; both are the associated data of
the seal, so editing either makes decryption fail instead of misleading it.

Decoding a payload whose encoding is not `binary/encrypted` passes it through
unchanged: histories written before encryption was turned on (the replay
gate's committed recordings, orders in flight at the switch) must still replay
and read. Encoding never does the reverse: every payload written is encrypted.

No import-time side effects: a codec exists only once a process builds one.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from ordersaga.runtime.keyring import DEV_KEY_ID, Keyring

if TYPE_CHECKING:
    from ordersaga.runtime.settings import Settings

ENCODING = b"binary/encrypted"
ENCODING_KEY = "encoding"
KEY_ID_KEY = "encryption-key-id"
NONCE_BYTES = 12
# AES-GCM's authentication tag, appended to the ciphertext: sealing even an
# empty serialized payload yields a nonce and a tag, so encrypted data is never
# shorter than NONCE_BYTES + TAG_BYTES.
TAG_BYTES = 16


class PayloadDecryptionError(ValueError):
    """An encrypted payload cannot be decrypted; never answered with garbage or plaintext."""


class UnknownKeyError(PayloadDecryptionError):
    def __init__(self, key_id: str, keyring: Keyring) -> None:
        super().__init__(
            f"payload encrypted with key id {key_id!r}, which is not in the keyring "
            f"(it holds {', '.join(sorted(keyring.keys))}); add that key back to "
            "ORDERSAGA_CODEC_KEYS"
        )
        self.key_id = key_id


def _associated_data(key_id: str) -> bytes:
    return ENCODING + b"\x00" + key_id.encode("ascii")


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}
        # (time.monotonic(), why) of the last payload this codec could not
        # decrypt: a worker whose keyring lacks a key the others write with
        # fails every task it is given, and its readiness says so (workers/health.py).
        self.last_failure: tuple[float, str] | None = None

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        try:
            return [self.decrypt(payload) for payload in payloads]
        except PayloadDecryptionError as failure:
            self.last_failure = (time.monotonic(), str(failure))
            raise

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._keyring.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(), _associated_data(key_id)
        )
        return Payload(
            metadata={ENCODING_KEY: ENCODING, KEY_ID_KEY: key_id.encode("ascii")},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(ENCODING_KEY) != ENCODING:
            return payload  # never encrypted (see the module's docstring)
        raw_key_id = payload.metadata.get(KEY_ID_KEY)
        if raw_key_id is None:
            raise PayloadDecryptionError(f"encrypted payload without {KEY_ID_KEY!r} metadata")
        key_id = raw_key_id.decode("ascii", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id, self._keyring)
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            # Else AESGCM raises a bare ValueError on a nonce under 8 bytes.
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} is too short: its data is "
                f"{len(payload.data)} bytes, less than the {NONCE_BYTES}-byte nonce and "
                f"{TAG_BYTES}-byte tag every encrypted payload carries"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _associated_data(key_id))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} failed authentication: "
                "it was altered, or the key under that id is not the one it was sealed with"
            ) from None
        return Payload.FromString(plain)


def keyring_from_settings(settings: Settings) -> Keyring:
    """The configured keyring; in dev mode without one, the key dev mode keeps in data_dir.

    Outside dev mode a missing keyring raises settings.MissingSecretError.
    """
    configured = settings.codec_keys
    if configured is not None and configured.get_secret_value().strip():
        return Keyring.parse(configured.get_secret_value(), settings.codec_current_key_id)
    # 32 random bytes as hex, made once (ordersaga.runtime.dev_secrets) and shared by every
    # process of the dev stack and every restart.
    secret = settings.dev_secret("codec_keys", None)
    return Keyring(DEV_KEY_ID, {DEV_KEY_ID: bytes.fromhex(secret)})


def payload_keyring(settings: Settings) -> Keyring | None:
    """What every Temporal client and worker of the saga encrypts with: the keyring,
    or None (no codec) when ORDERSAGA_CODEC_DISABLED_FOR_BENCHMARK is set in dev mode,
    which only `ordersaga bench` does, to measure the codec's cost.

    Outside dev mode that setting raises CodecDisabledOutsideDevModeError (settings
    validation refuses it already; this holds for settings built without
    validation too). A missing keyring raises as keyring_from_settings does.
    """
    if settings.codec_disabled_for_benchmark:
        if not settings.dev_mode:
            raise CodecDisabledOutsideDevModeError()
        return None
    return keyring_from_settings(settings)


class CodecDisabledOutsideDevModeError(ValueError):
    def __init__(self) -> None:
        from ordersaga.runtime.settings import CODEC_DISABLED_OUTSIDE_DEV_MODE, env_var_name

        super().__init__(
            f"{env_var_name('codec_disabled_for_benchmark')}: {CODEC_DISABLED_OUTSIDE_DEV_MODE}"
        )


# --- whole histories (the replay gate's files) --------------------------------

_ENCODING_B64 = base64.b64encode(ENCODING).decode()


def decrypt_history_json(history_json: str, codec: EncryptionCodec) -> str:
    """The same history (the SDK's / `temporal workflow show -o json` shape) with
    every encrypted payload replaced by its plaintext."""
    history = json.loads(history_json)
    _decrypt_node(history, codec)
    return json.dumps(history)


def _decrypt_node(node: Any, codec: EncryptionCodec) -> None:
    if isinstance(node, list):
        for item in node:
            _decrypt_node(item, codec)
        return
    if not isinstance(node, dict):
        return
    metadata = node.get("metadata")
    if isinstance(metadata, dict) and metadata.get(ENCODING_KEY) == _ENCODING_B64:
        plain = codec.decrypt(json_format.ParseDict(node, Payload()))
        node.clear()
        node.update(json_format.MessageToDict(plain))
        return
    for child in node.values():
        _decrypt_node(child, codec)
