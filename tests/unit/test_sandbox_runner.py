"""The workers' sandbox runs its glue code precompiled (ordersaga.runtime.temporal_config).

The saving rests on a private class of the SDK (the sandbox's instance): an SDK
upgrade that moves it would fall back to the plain sandbox (the same behaviour,
more CPU), and this test says so. The replay gate (tests/replay) and the workflow tests run
every workflow through this runner.
"""

from __future__ import annotations

import inspect

import pytest
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance

from ordersaga.runtime import temporal_config


def test_the_runner_is_the_sandbox_with_its_glue_code_precompiled() -> None:
    runner = temporal_config.workflow_runner()
    assert isinstance(runner, SandboxedWorkflowRunner)
    instance_class = temporal_config.precompiling_instance_class()
    assert instance_class is not None, "the installed SDK moved the sandbox's _Instance"
    assert issubclass(instance_class, _Instance)
    assert type(runner).__name__ == "_PrecompiledSandboxedWorkflowRunner"
    # What the override relies on: the SDK runs its glue code through
    # _run_code(code, **extra_globals), which hands `code` to exec().
    assert list(inspect.signature(_Instance._run_code).parameters) == [
        "self",
        "code",
        "extra_globals",
    ]
    assert "exec(code," in inspect.getsource(_Instance._run_code)


def test_glue_code_is_compiled_once_per_source() -> None:
    source = "x = 1\n"
    first = temporal_config._compiled(source)
    assert temporal_config._compiled(source) is first
    namespace: dict[str, object] = {}
    exec(first, namespace)
    assert namespace["x"] == 1
    assert first.co_filename == "<string>"


def test_an_sdk_whose_sandbox_changed_gets_the_plain_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _run_code(self: object, source: str, extra: object) -> None:  # another shape
        raise AssertionError("never called")

    monkeypatch.setattr(_Instance, "_run_code", _run_code)
    temporal_config.precompiling_instance_class.cache_clear()
    try:
        assert temporal_config.precompiling_instance_class() is None
        runner = temporal_config.workflow_runner()
        assert type(runner) is SandboxedWorkflowRunner
    finally:
        monkeypatch.undo()
        temporal_config.precompiling_instance_class.cache_clear()
    assert temporal_config.precompiling_instance_class() is not None
