"""The payload codec and its keyring: AES-256-GCM, fresh nonces, keys by id, loud failures."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from ordersaga.cli import main
from ordersaga.runtime.codec import (
    ENCODING,
    KEY_ID_KEY,
    NONCE_BYTES,
    TAG_BYTES,
    EncryptionCodec,
    PayloadDecryptionError,
    UnknownKeyError,
    decrypt_history_json,
    keyring_from_settings,
)
from ordersaga.runtime.keyring import DEV_KEY_ID, Keyring, KeyringError, format_keyring
from ordersaga.runtime.settings import MissingSecretError, Settings
from ordersaga.runtime.temporal_config import data_converter

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
PII = "Ada Lovelace, 12 St James Sq, SW1Y 4JH, tok_visa_4242"


def plain_payload(text: str = PII) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def codec(current: str = "a", **keys: bytes) -> EncryptionCodec:
    return EncryptionCodec(Keyring(current, keys or {"a": KEY_A}))


async def test_round_trip_restores_the_payload_exactly() -> None:
    original = plain_payload()
    (encrypted,) = await codec().encode([original])
    (decrypted,) = await codec().decode([encrypted])
    assert decrypted == original


async def test_encrypted_payload_says_how_and_under_which_key_and_hides_the_data() -> None:
    (encrypted,) = await codec().encode([plain_payload()])
    assert encrypted.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert encrypted.metadata[KEY_ID_KEY] == b"a"
    wire = encrypted.SerializeToString()
    for fragment in ("Ada", "Lovelace", "St James", "SW1Y", "tok_visa", "json/plain"):
        assert fragment.encode() not in wire


async def test_every_encryption_uses_a_fresh_nonce() -> None:
    sealed = await codec().encode([plain_payload()] * 50)
    nonces = {payload.data[:12] for payload in sealed}
    assert len(nonces) == 50
    assert len({payload.data for payload in sealed}) == 50


async def test_unknown_key_id_fails_naming_it() -> None:
    (encrypted,) = await codec("old", old=KEY_A).encode([plain_payload()])
    with pytest.raises(UnknownKeyError, match="'old'") as raised:
        await codec("new", new=KEY_B).decode([encrypted])
    assert raised.value.key_id == "old"
    assert PII not in str(raised.value)


async def test_tampered_ciphertext_fails() -> None:
    (encrypted,) = await codec().encode([plain_payload()])
    data = bytearray(encrypted.data)
    data[-1] ^= 1
    encrypted.data = bytes(data)
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec().decode([encrypted])


async def test_a_key_id_swapped_for_another_known_key_fails() -> None:
    both = codec("a", a=KEY_A, b=KEY_B)
    (encrypted,) = await both.encode([plain_payload()])
    encrypted.metadata[KEY_ID_KEY] = b"b"
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await both.decode([encrypted])


async def test_the_same_key_under_another_id_fails_too() -> None:
    # The key id is associated data: relabelling breaks the seal even with the same key.
    (encrypted,) = await codec("a", a=KEY_A).encode([plain_payload()])
    encrypted.metadata[KEY_ID_KEY] = b"alias"
    with pytest.raises(PayloadDecryptionError):
        await codec("alias", alias=KEY_A).decode([encrypted])


async def test_payload_without_key_id_fails() -> None:
    (encrypted,) = await codec().encode([plain_payload()])
    del encrypted.metadata[KEY_ID_KEY]
    with pytest.raises(PayloadDecryptionError, match=KEY_ID_KEY):
        await codec().decode([encrypted])


def sealed_data(size: int) -> Payload:
    """A payload labelled encrypted under a known key whose data is `size` zero bytes."""
    return Payload(metadata={"encoding": ENCODING, KEY_ID_KEY: b"a"}, data=bytes(size))


# The data holds a 12-byte nonce and at least the 16-byte tag: 28 bytes at the least.
@pytest.mark.parametrize("size", [0, 1, 5, 7, 8, 11, 12, 13, 27])
async def test_data_too_short_for_nonce_and_tag_fails_saying_so(size: int) -> None:
    # Under 8 bytes AESGCM itself raised a bare ValueError (a 500 in the codec server).
    with pytest.raises(PayloadDecryptionError, match=f"too short: its data is {size} bytes"):
        await codec().decode([sealed_data(size)])


async def test_the_shortest_sealed_payload_is_nonce_and_tag_and_decrypts() -> None:
    (empty,) = await codec().encode([Payload()])
    assert len(empty.data) == NONCE_BYTES + TAG_BYTES == 28
    assert await codec().decode([empty]) == [Payload()]
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec().decode([sealed_data(28)])


async def test_a_payload_never_encrypted_passes_through_decode() -> None:
    # Histories from before encryption (the replay gate's recordings) must still read.
    original = plain_payload("old order")
    assert await codec().decode([original]) == [original]


async def test_the_data_converter_encrypts_values_and_failures() -> None:
    converter = data_converter(Keyring("a", {"a": KEY_A}))
    (payload,) = await converter.encode([{"token": "tok_visa_4242"}])
    assert payload.metadata["encoding"] == ENCODING
    assert await converter.decode([payload]) == [{"token": "tok_visa_4242"}]

    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    failure = Failure()
    await converter.encode_failure(ApplicationError(f"declined for {PII}"), failure)
    assert PII not in str(failure) and "SW1Y" not in failure.SerializeToString().decode(
        errors="replace"
    )
    assert failure.message == "Encoded failure"
    decoded = await converter.decode_failure(failure)
    assert PII in str(decoded)


def test_decrypt_history_json_decrypts_every_payload_in_place() -> None:
    import asyncio

    from google.protobuf import json_format

    (encrypted,) = asyncio.run(codec().encode([plain_payload()]))
    history = {"events": [{"input": {"payloads": [json_format.MessageToDict(encrypted)]}}]}
    text = decrypt_history_json(json.dumps(history), codec())
    (payload,) = json.loads(text)["events"][0]["input"]["payloads"]
    assert json.loads(base64.b64decode(payload["data"])) == PII


# --- keyrings ------------------------------------------------------------------


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_keyring_first_key_encrypts_unless_another_is_named() -> None:
    text = f"k2:{b64(KEY_B)}, k1:{b64(KEY_A)}"
    assert Keyring.parse(text).current_key_id == "k2"
    ring = Keyring.parse(text, "k1")
    assert ring.current_key_id == "k1" and ring.keys == {"k2": KEY_B, "k1": KEY_A}
    assert Keyring.parse(format_keyring(ring.keys)).keys == ring.keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key given"),
        (b64(KEY_A), "entry 1 is not <key id>:<base64 key>"),
        (f"bad id:{b64(KEY_A)}", "entry 1: a key id is"),
        (f"{b64(KEY_A)}:{b64(KEY_B)}", "entry 1: a key id is"),
        ("k1:not base64!", "key 'k1' is not valid base64"),
        (f"k1:{b64(KEY_A[:16])}", "key 'k1' is 16 bytes; AES-256 needs 32"),
        (f"k1:{b64(KEY_A)},k1:{b64(KEY_B)}", "key id 'k1' appears twice"),
    ],
)
def test_keyring_errors_are_clear_and_never_show_key_material(text: str, message: str) -> None:
    with pytest.raises(KeyringError) as raised:
        Keyring.parse(text)
    assert message in str(raised.value)
    for key in (KEY_A, KEY_B, KEY_A[:16]):
        assert b64(key) not in str(raised.value)


def test_current_key_must_be_in_the_keyring() -> None:
    with pytest.raises(KeyringError, match="'k9' is not in the keyring"):
        Keyring.parse(f"k1:{b64(KEY_A)}", "k9")


def test_keyring_repr_hides_the_keys() -> None:
    assert b64(KEY_A) not in repr(Keyring("a", {"a": KEY_A}))
    assert str(KEY_A) not in repr(Keyring("a", {"a": KEY_A}))


def test_settings_keyring_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_CODEC_KEYS", f"k2:{b64(KEY_B)},k1:{b64(KEY_A)}")
    monkeypatch.setenv("ORDERSAGA_CODEC_CURRENT_KEY_ID", "k1")
    ring = keyring_from_settings(Settings())
    assert ring.current_key_id == "k1" and set(ring.keys) == {"k1", "k2"}


def test_production_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingSecretError, match="ORDERSAGA_CODEC_KEYS is not set"):
        keyring_from_settings(Settings(dev_mode=False, data_dir=tmp_path))


def test_dev_mode_makes_one_key_and_every_process_reuses_it(tmp_path: Path) -> None:
    first = keyring_from_settings(Settings(dev_mode=True, data_dir=tmp_path))
    again = keyring_from_settings(Settings(dev_mode=True, data_dir=tmp_path))
    assert first.current_key_id == DEV_KEY_ID and first.keys == again.keys
    assert len(first.keys[DEV_KEY_ID]) == 32
    secret = tmp_path / "secrets" / "codec_keys"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("command", [["worker"], ["api"], ["codec-server"]])
def test_components_refuse_to_start_without_a_key(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("ORDERSAGA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORDERSAGA_DATA_DIR", str(tmp_path))
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "refusing to start" in err[0] and "ORDERSAGA_CODEC_KEYS is not set" in err[0]
