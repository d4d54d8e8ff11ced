"""ORDERSAGA_CODEC_DISABLED_FOR_BENCHMARK: the benchmark's way to run the saga
without the payload codec, and every component's refusal of it outside dev mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ordersaga.devstack import child_env
from ordersaga.runtime.codec import (
    CodecDisabledOutsideDevModeError,
    EncryptionCodec,
    payload_keyring,
)
from ordersaga.runtime.settings import Settings, describe_validation_error
from ordersaga.runtime.temporal_config import data_converter

VARIABLE = "ORDERSAGA_CODEC_DISABLED_FOR_BENCHMARK"
ORDERSAGA = Path(sys.executable).parent / "ordersaga"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ORDERSAGA_"):
            monkeypatch.delenv(name)


def test_settings_refuse_it_outside_dev_mode_in_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VARIABLE, "true")

    with pytest.raises(ValidationError) as caught:
        Settings()

    [line] = describe_validation_error(caught.value)
    assert line.startswith(f"{VARIABLE}: refused outside dev mode")
    assert "\n" not in line


def test_settings_accept_it_in_dev_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(VARIABLE, "true")

    settings = Settings(dev_mode=True, data_dir=tmp_path)

    assert settings.codec_disabled_for_benchmark is True
    assert payload_keyring(settings) is None
    assert data_converter(payload_keyring(settings)).payload_codec is None


def test_off_by_default_every_payload_is_encrypted(tmp_path: Path) -> None:
    settings = Settings(dev_mode=True, data_dir=tmp_path)

    assert settings.codec_disabled_for_benchmark is False
    keyring = payload_keyring(settings)
    assert keyring is not None
    assert isinstance(data_converter(keyring).payload_codec, EncryptionCodec)


def test_settings_built_without_validation_are_refused_too() -> None:
    # model_copy skips validation; the converter's source checks again.
    settings = Settings().model_copy(update={"codec_disabled_for_benchmark": True})

    with pytest.raises(CodecDisabledOutsideDevModeError, match=f"^{VARIABLE}: refused"):
        payload_keyring(settings)


@pytest.mark.parametrize("disabled", [True, False])
def test_the_embedded_stack_passes_the_supervisors_choice_to_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disabled: bool
) -> None:
    # Whatever the shell says, the children follow the supervisor's settings.
    monkeypatch.setenv(VARIABLE, "false" if disabled else "true")
    settings = Settings(dev_mode=True).model_copy(update={"codec_disabled_for_benchmark": disabled})

    env = child_env(settings, tmp_path)

    assert env[VARIABLE] == ("true" if disabled else "false")
    assert env["ORDERSAGA_DEV_MODE"] == "true"


@pytest.mark.parametrize(
    "command", [["api"], ["worker"], ["codec-server"], ["service", "inventory"]]
)
def test_every_component_refuses_to_start_with_it_outside_dev_mode(
    command: list[str], tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORDERSAGA_")}
    result = subprocess.run(
        [str(ORDERSAGA), *command],
        env={**clean, VARIABLE: "true", "ORDERSAGA_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{VARIABLE}: refused outside dev mode" in result.stderr
    assert not (tmp_path / "inventory.sqlite3").exists()
