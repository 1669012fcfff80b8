"""Runtime: executes turns of threads; knows nothing about Dagster."""

from wf_pipeline.runtime.batch import run_segment_batch, run_turn_batch
from wf_pipeline.runtime.environment import RuntimeEnv, provider_from_settings
from wf_pipeline.runtime.failure import gate_stops_thread, prepare_resume, resume_seq
from wf_pipeline.runtime.outputs import (
    latest_completed_threads,
    output_directory,
    tree_of,
    write_thread_output,
)
from wf_pipeline.runtime.runs import (
    RunPlan,
    RunSummary,
    ThreadSummary,
    next_ready_level,
    plan_run,
    replan,
    restrict_plan,
    summarize_run,
)
from wf_pipeline.runtime.sample import sample_render_errors
from wf_pipeline.runtime.sinks import OutputSink, output_sink, register_output_sink, write_file_atomically
from wf_pipeline.runtime.targets import (
    Target,
    find_tree,
    register_targets,
    register_tree,
    resolve_target,
    target_depth,
    target_key_for,
    tree_output_dir,
)
from wf_pipeline.runtime.threads import (
    ThreadIdentity,
    ThreadPlan,
    final_artifact_id,
    open_thread,
    plan_for_thread,
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
    "ThreadIdentity",
    "ThreadPlan",
    "ThreadSummary",
    "TurnOutput",
    "final_artifact_id",
    "find_tree",
    "gate_stops_thread",
    "next_ready_level",
    "open_thread",
    "output_directory",
    "output_sink",
    "plan_for_thread",
    "plan_run",
    "plan_thread",
    "prepare_resume",
    "provider_from_settings",
    "register_output_sink",
    "register_targets",
    "register_tree",
    "replan",
    "restrict_plan",
    "resolve_target",
    "resume_seq",
    "render_variables",
    "run_turn",
    "sample_render_errors",
    "run_segment_batch",
    "run_turn_batch",
    "scan_workspace",
    "summarize_run",
    "target_depth",
    "target_key_for",
    "tree_of",
    "tree_output_dir",
    "write_file_atomically",
    "write_thread_output",
    "latest_completed_threads",
]
