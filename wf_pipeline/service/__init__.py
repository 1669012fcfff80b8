"""What the CLI and the Dagster definitions call: run, resume, backfill, sync targets, queries.

Plain functions over the runtime and the compiler's launch API. Each takes the
`Settings` it works under as its first argument; none reads the environment.
"""

from wf_pipeline.service.definitions import code_location
from wf_pipeline.service.queries import (
    list_profiles,
    list_threads,
    scan,
    show_profile,
    show_thread,
    validate_profiles,
)
from wf_pipeline.service.runs import backfill, export_outputs, resume_thread, run_workflow, sync_targets

__all__ = [
    "backfill",
    "export_outputs",
    "code_location",
    "list_profiles",
    "list_threads",
    "resume_thread",
    "run_workflow",
    "scan",
    "show_profile",
    "show_thread",
    "sync_targets",
    "validate_profiles",
]
