"""The import-linter contract covers every module of the tools layer.

The layers contract in pyproject.toml names the tools one by one (they sit in
the `ordersaga` package beside the shared runtime). A tool added without a line
there would be checked by nothing, so this test fails until it is named.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import ordersaga

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _layers_contract() -> list[str]:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [layers] = [contract for contract in contracts if contract["type"] == "layers"]
    names: list[str] = []
    for layer in layers["layers"]:
        names += [name.strip() for name in layer.replace(":", "|").split("|")]
    return names


def test_every_module_of_the_ordersaga_package_sits_in_a_named_layer() -> None:
    package_dir = Path(ordersaga.__file__).parent
    modules = {
        f"ordersaga.{path.stem if path.is_file() else path.name}"
        for path in package_dir.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    unnamed = modules - set(_layers_contract())
    assert not unnamed, f"name these in pyproject.toml's layers contract: {sorted(unnamed)}"


def test_the_layers_run_from_tools_down_to_contracts() -> None:
    layers = _layers_contract()
    order = [
        layers.index(name)
        for name in ("ordersaga.cli", "api", "workflows", "ordersaga.runtime", "contracts")
    ]
    assert order == sorted(order)
