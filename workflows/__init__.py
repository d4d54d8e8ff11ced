"""Workflow code. Deterministic: imports only contracts, temporalio.workflow and
(passed through the sandbox) the activity classes for typed method references."""
