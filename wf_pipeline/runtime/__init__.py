"""Runtime: executes turns of threads; knows nothing about Dagster."""

from wf_pipeline.runtime.batch import run_turn_batch
from wf_pipeline.runtime.environment import RuntimeEnv, provider_from_settings
from wf_pipeline.runtime.failure import gate_stops_thread, prepare_resume, resume_seq
from wf_pipeline.runtime.runs import (
    RunPlan,
    RunSummary,
    ThreadSummary,
    next_ready_level,
    plan_run,
    summarize_run,
)
from wf_pipeline.runtime.sample import sample_render_errors
from wf_pipeline.runtime.sinks import OutputSink, output_sink, register_output_sink, write_file_atomically
from wf_pipeline.runtime.targets import Target, register_targets, resolve_target, target_depth, target_key_for
from wf_pipeline.runtime.threads import (
    ThreadPlan,
    final_artifact_id,
    open_thread,
    plan_thread,
    scan_workspace,
)
from wf_pipeline.runtime.turn import CONTEXT_REF, TurnOutput, render_variables, run_turn

__all__ = [
    "CONTEXT_REF",
    "OutputSink",
    "RunPlan",
    "RunSummary",
    "RuntimeEnv",
    "Target",
    "ThreadPlan",
    "ThreadSummary",
    "TurnOutput",
    "final_artifact_id",
    "gate_stops_thread",
    "open_thread",
    "output_sink",
    "next_ready_level",
    "plan_run",
    "plan_thread",
    "prepare_resume",
    "provider_from_settings",
    "register_output_sink",
    "register_targets",
    "resolve_target",
    "resume_seq",
    "render_variables",
    "run_turn",
    "sample_render_errors",
    "run_turn_batch",
    "scan_workspace",
    "summarize_run",
    "target_depth",
    "target_key_for",
    "write_file_atomically",
]
