"""The only place that imports dagster: profiles compile to Definitions here."""

from wf_pipeline.compiler.definitions import build_definitions, job_name, resolve_job
from wf_pipeline.compiler.execution import open_instance, resume_thread, run_workflow

__all__ = ["open_instance", "build_definitions", "job_name", "resolve_job", "resume_thread", "run_workflow"]
