"""What the CLI and the Dagster definitions call: run, resume, backfill, migrate, sync targets, queries.

Plain functions over the runtime and the compiler's launch API. Each takes the
`Settings` it works under as its first argument; none reads the environment.
"""

from wf_pipeline.service.agents import (
    AgentRunSummary,
    list_agents,
    plan_agent_run,
    run_agent,
    workflow_graph,
    workflow_graph_dot,
)
from wf_pipeline.service.cas import verify_cas
from wf_pipeline.service.compaction import CompactionResult, compact
from wf_pipeline.service.definitions import code_location
from wf_pipeline.service.migrate import MigrationReport, migrate_workflow
from wf_pipeline.service.queries import (
    explain_gates,
    list_profiles,
    list_threads,
    scan,
    show_profile,
    show_thread,
    validate_profiles,
)
from wf_pipeline.service.runs import backfill, export_outputs, resume_thread, run_workflow, sync_targets
from wf_pipeline.service.telemetry import (
    compact_telemetry,
    query_telemetry,
    synth_telemetry,
    telemetry_views,
)
from wf_pipeline.service.ui import dagster_ui_command

__all__ = [
    "AgentRunSummary",
    "list_agents",
    "plan_agent_run",
    "run_agent",
    "workflow_graph",
    "workflow_graph_dot",
    "CompactionResult",
    "MigrationReport",
    "backfill",
    "compact",
    "compact_telemetry",
    "explain_gates",
    "export_outputs",
    "code_location",
    "dagster_ui_command",
    "list_profiles",
    "list_threads",
    "migrate_workflow",
    "query_telemetry",
    "resume_thread",
    "run_workflow",
    "scan",
    "show_profile",
    "show_thread",
    "sync_targets",
    "synth_telemetry",
    "telemetry_views",
    "validate_profiles",
    "verify_cas",
]
