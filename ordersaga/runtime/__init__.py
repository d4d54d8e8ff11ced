"""The shared runtime: what api, workers and services import (settings, logging,
telemetry, auth, the payload codec and the Temporal client's configuration).

It sits below them and never imports them, nor the tools in `ordersaga` (the CLI,
the dev supervisor, the bench, the histories recorder, the audit, the chaos
suite); the import-linter contract in pyproject.toml keeps it so.
"""
