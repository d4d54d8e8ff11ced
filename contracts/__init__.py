"""Plain data shared by the workflow, activities, API and services.

Standard library only: no I/O, no temporalio, no pydantic, nothing that runs on
import. The workflow sandbox re-imports these modules for every workflow run.
"""
