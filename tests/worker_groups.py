"""How `make test` shares the test files between its pytest-xdist workers.

`--dist loadfile` runs each file whole on one worker, so a module-scoped stack
starts once. The runs of whole process trees (Temporal, the services, the
worker, the API, as separate processes) go further: all of them are one unit
of work, run one after another on the same worker. Each loads both cores; two
at once would only slow each other and stretch their timeouts.

(`--dist loadgroup` with `xdist_group` marks would say the same, but
pytest-xdist 3.8 renames a node id pytest 9 no longer lets it rename, and the
marks are silently ignored.)
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

WHOLE_SYSTEM_RUNS = frozenset(
    {"tests/e2e/test_chaos.py", "tests/e2e/test_bench.py", "tests/e2e/test_devstack.py"}
)


class WholeSystemRunsInTurn(LoadFileScheduling):
    """Load per file, the whole-system runs counting as one file."""

    def _split_scope(self, nodeid: str) -> str:
        # The one method pytest-xdist's own schedulers override to say what a unit is.
        module = super()._split_scope(nodeid)
        return "whole system runs" if module in WHOLE_SYSTEM_RUNS else module
