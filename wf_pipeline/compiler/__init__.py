"""The only place that imports dagster: profiles compile to Definitions here."""

from wf_pipeline.compiler.definitions import build_definitions, job_name, resolve_job
from wf_pipeline.compiler.execution import open_instance, resume_thread, run_workflow, sync_targets

__all__ = [
    "build_definitions",
    "job_name",
    "open_instance",
    "resolve_job",
    "resume_thread",
    "run_workflow",
    "sync_targets",
]
