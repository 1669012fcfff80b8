"""The ``wf_retention`` maintenance job, its daily schedule and its early trigger.

One run of ``wf_retention`` applies every profile's retention windows to the CAS (a
tombstone per deleted object), prunes Dagster's own history (`wf_pipeline.compiler.history`:
runs older than each workflow's ``run_history`` window, partitions of gone targets), then
compacts (orphans, scratch files, archived records, closed telemetry days). Each step's
figures are its output metadata and the run's tags (``wf/retention_*``), so the UI's run
page and run list show them: ids, counts and bytes only.

``wf_retention_daily`` runs the job every day; ``wf_retention_trigger`` runs it early when
the bytes retention would free pass ``WF_RETENTION_TRIGGER_BYTES``. Both are on by default:
a profile's retention windows are meant to be enforced without anyone watching.

``wf_keys_rewrap`` moves every data key under a decrypt-only KEK to its lineage's primary
(the use case of ``wf keys rewrap``, handed in like the retention calls); run it from the
UI or a schedule after a rotation. Its metadata: counts and elapsed ms only.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotations at definition time.

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    In,
    JobDefinition,
    Nothing,
    OpExecutionContext,
    Out,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    op,
    sensor,
)
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from wf_pipeline.compiler.history import prune_dagster_history
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.security.sinks import scrub_value
from wf_pipeline.settings import Settings

RETENTION_JOB = "wf_retention"
KEYS_REWRAP_JOB = "wf_keys_rewrap"
RETENTION_SCHEDULE = "wf_retention_daily"
RETENTION_SENSOR = "wf_retention_trigger"
# Daily at 03:00 UTC, when few runs write.
RETENTION_CRON = "0 3 * * *"
# The trigger plans retention (a pass over the record store's links): at most every 15 minutes.
TRIGGER_INTERVAL_S = 15 * 60
# Tags a retention run carries, for the UI's run list (values: decimal counts and bytes).
DELETED_TAG = "wf/retention_deleted"
BYTES_FREED_TAG = "wf/retention_bytes_freed"
TOMBSTONES_TAG = "wf/retention_tombstones"
SHREDDED_TAG = "wf/retention_shredded_lineages"
RUNS_DELETED_TAG = "wf/retention_runs_deleted"
TRIGGER_BYTES_TAG = "wf/retention_due_bytes"


@dataclass(frozen=True)
class MaintenanceCalls:
    """The use cases the maintenance job runs, handed in by the service layer (which sits above the compiler).

    Each takes the settings of the run's runtime and the time (ms since the epoch) ages are
    judged against; figures are flat name -> count or bytes mappings (no paths, no payload).

    Attributes:
        due_bytes: bytes of the CAS objects retention would delete (a dry run).
        apply_retention: applies retention; figures ``deleted``, ``bytes_freed`` (bytes),
            ``tombstones_written`` and ``shredded_lineages`` (KEK lineages destroyed), at
            least; other figures are counts or ids (e.g. ``shredded_kek_ids``).
        compact: compacts the home; figures per part.
        rewrap_keys: moves data keys off decrypt-only KEKs (takes the settings only);
            figures ``rewrapped``, ``skipped``, ``remaining`` (counts) and ``elapsed_ms``.
            None: no ``wf_keys_rewrap`` job.
    """

    due_bytes: Callable[[Settings, int], int]
    apply_retention: Callable[[Settings, int], Mapping[str, int | str]]
    compact: Callable[[Settings, int], Mapping[str, int | str]]
    rewrap_keys: Callable[[Settings], Mapping[str, int]] | None = None


def run_history_windows(env: RuntimeEnv) -> dict[str, int | None]:
    """Workflow id -> its profile's ``run_history`` window in ms (None: Dagster runs kept for good).

    The window is the policy's own (`wf_pipeline.profiles.retention.RetentionPolicy`); the
    grace period is for artifacts a run may still be writing, and a finished run writes nothing.
    """
    return {loaded.profile.workflow_id: loaded.retention.run_history_ms for loaded in env.catalog.all()}


def _record(context: OpExecutionContext, figures: Mapping[str, int | str], tags: Mapping[str, str]) -> None:
    """Figures as the step's output metadata, and the named ones as run tags the run list shows
    (both Dagster sinks: every string passes `scrub_value`)."""
    figures = scrub_value(dict(figures))
    context.add_output_metadata(figures)
    context.instance.add_run_tags(context.run_id, {tag: str(figures[name]) for tag, name in tags.items()})


def retention_job(calls: MaintenanceCalls) -> JobDefinition:
    """The ``wf_retention`` job: apply retention, prune Dagster's history, then compact.

    Args:
        calls: the retention and compaction use cases (`MaintenanceCalls`).

    Returns:
        A job whose ops use the ``wf_runtime`` resource (bound by the Definitions): its
        settings for ``calls``, its records and catalog for the history prune. A step whose
        use case raises fails the run with that error's code; later steps do not run.
    """

    @op(
        required_resource_keys={RUNTIME_KEY},
        out=Out(Nothing),
        description=(
            "Delete the CAS objects past their profile's retention window, a tombstone for each; "
            "shred expired KEK lineages of shred-mode classes."
        ),
    )
    def apply_retention_op(context: OpExecutionContext) -> None:
        env: RuntimeEnv = getattr(context.resources, RUNTIME_KEY)
        figures = calls.apply_retention(env.settings, now_ms())
        _record(
            context,
            figures,
            {
                DELETED_TAG: "deleted",
                BYTES_FREED_TAG: "bytes_freed",
                TOMBSTONES_TAG: "tombstones_written",
                SHREDDED_TAG: "shredded_lineages",
            },
        )

    @op(
        required_resource_keys={RUNTIME_KEY},
        ins={"after": In(Nothing)},
        out=Out(Nothing),
        description="Delete workflow runs older than their run_history window; remove gone targets' partitions.",
    )
    def prune_dagster_history_op(context: OpExecutionContext) -> None:
        env: RuntimeEnv = getattr(context.resources, RUNTIME_KEY)
        result = prune_dagster_history(
            context.instance, env.records, env.catalog.all(), run_history_windows(env), now_ms=now_ms()
        )
        figures = {
            "runs_deleted": result.runs_deleted,
            "runs_kept_latest": result.runs_kept_latest,
            "partitions_removed": result.partitions_removed,
        }
        _record(context, figures, {RUNS_DELETED_TAG: "runs_deleted"})

    @op(
        required_resource_keys={RUNTIME_KEY},
        ins={"after": In(Nothing)},
        out=Out(Nothing),
        description="Remove orphans and scratch files, archive old records, merge closed telemetry days.",
    )
    def compact_op(context: OpExecutionContext) -> None:
        env: RuntimeEnv = getattr(context.resources, RUNTIME_KEY)
        _record(context, calls.compact(env.settings, now_ms()), {})

    @job(
        name=RETENTION_JOB,
        description="Enforce retention windows (CAS, Dagster runs, partitions), then compact.",
        tags={"wf/maintenance": "retention"},
    )
    def _wf_retention() -> None:
        compact_op(after=prune_dagster_history_op(after=apply_retention_op()))

    return _wf_retention


def keys_rewrap_job(rewrap_keys: Callable[[Settings], Mapping[str, int]]) -> JobDefinition:
    """The ``wf_keys_rewrap`` job: one op that moves every data key under a decrypt-only KEK to its lineage's primary.

    Args:
        rewrap_keys: the use case (`MaintenanceCalls.rewrap_keys`), called with the
            ``wf_runtime`` resource's settings.

    Returns:
        A job whose op's output metadata are the figures (``rewrapped``, ``skipped``,
        ``remaining``: data keys; ``elapsed_ms``: ms). Resumable: a run killed mid-way
        leaves every page it finished done, and the next run moves the rest. The op fails
        with the use case's error code (``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_ERROR``...).
    """

    @op(
        required_resource_keys={RUNTIME_KEY},
        out=Out(Nothing),
        description="Move data keys from decrypt-only KEKs to their lineage's primary (payloads untouched).",
    )
    def rewrap_keys_op(context: OpExecutionContext) -> None:
        env: RuntimeEnv = getattr(context.resources, RUNTIME_KEY)
        context.add_output_metadata(dict(rewrap_keys(env.settings)))

    @job(
        name=KEYS_REWRAP_JOB,
        description="Rewrap data keys after a KEK rotation (wf keys rewrap).",
        tags={"wf/maintenance": "keys"},
    )
    def _wf_keys_rewrap() -> None:
        rewrap_keys_op()

    return _wf_keys_rewrap


def retention_schedule(retention: JobDefinition) -> ScheduleDefinition:
    """``wf_retention_daily``: the job every day at 03:00 UTC (`RETENTION_CRON`), on by default."""
    return ScheduleDefinition(
        name=RETENTION_SCHEDULE,
        job=retention,
        cron_schedule=RETENTION_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Apply retention and compact, daily.",
    )


def retention_trigger_sensor(retention: JobDefinition, calls: MaintenanceCalls) -> SensorDefinition:
    """``wf_retention_trigger``: runs the job early when retention would free ``WF_RETENTION_TRIGGER_BYTES``.

    Evaluated at most every `TRIGGER_INTERVAL_S` seconds. While a ``wf_retention`` run is
    queued or in progress (whoever launched it) it skips without planning, so a slow run
    is never doubled; otherwise it plans retention (``calls.due_bytes``) with the code
    location's WF_ settings and requests a run, tagged with the due bytes, when they reach
    the threshold. The cursor holds the time (ms) of the last request, which makes each
    request's run key new.
    """

    # Targeted by name: given the job itself, Definitions rebinds it with its resources
    # through a copy that emits Dagster's BetaWarning on ``owners`` at every load.
    @sensor(
        name=RETENTION_SENSOR,
        job_name=retention.name,
        minimum_interval_seconds=TRIGGER_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Run wf_retention before its schedule when expired bytes pass WF_RETENTION_TRIGGER_BYTES.",
    )
    def _trigger(context: SensorEvaluationContext) -> Any:
        unfinished = context.instance.get_run_records(
            filters=RunsFilter(job_name=RETENTION_JOB, statuses=NOT_FINISHED_STATUSES), limit=1
        )
        if unfinished:
            return SkipReason(f"run {unfinished[0].dagster_run.run_id} of {RETENTION_JOB} is not finished")
        settings = Settings.from_env()
        now = now_ms()
        due = calls.due_bytes(settings, now)
        threshold = settings.retention_trigger_bytes
        if due < threshold:
            return SkipReason(f"{due} bytes are due, below WF_RETENTION_TRIGGER_BYTES={threshold}")
        context.update_cursor(str(now))
        return RunRequest(run_key=f"{RETENTION_SENSOR}:{now}", tags={TRIGGER_BYTES_TAG: str(due)})

    return _trigger
