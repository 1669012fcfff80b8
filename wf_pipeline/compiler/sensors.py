"""Sensors: a backfill launched from the UI finishes bottom-up on its own.

A single-run backfill over a whole tree runs its leaves; their parents wait (the runtime
skips a directory whose children have not finished). When such a run succeeds, or fails
only because some of its threads failed (it carries the ``wf/threads_failed`` tag; a
failed child is settled, so its parent may go ahead), a sensor requests the next ready
depth level as one run, until the tree is done. A run that failed for any other reason
is not continued (its level would only fail again). Runs the CLI launches level by level
itself carry a tag and are left alone, and so are replays (`wf_pipeline.compiler.replay`):
a replay writes nothing live, so its run must not start the documenting of the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorDefinition,
    SkipReason,
    run_status_sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from wf_pipeline.compiler.assets import THREADS_FAILED_TAG, is_workflow_run
from wf_pipeline.compiler.replay import replay_asset_key, replay_job_name
from wf_pipeline.errors import RunError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import RuntimeEnv, next_ready_level, resolve_target
from wf_pipeline.settings import Settings

LAUNCHED_BY_TAG = "wf/launched_by"
CONTINUES_TAG = "wf/continues_run"


def bottom_up_sensor(loaded: LoadedProfile, job: Any) -> SensorDefinition:
    """``job`` is the workflow's asset job (an unresolved asset job definition); watches successful runs."""
    workflow_id = loaded.profile.workflow_id

    @run_status_sensor(
        name=f"{workflow_id}_bottom_up",
        run_status=DagsterRunStatus.SUCCESS,
        # Launches from the asset graph run as Dagster's implicit asset job, not as ours,
        # so every run of the code location is watched and filtered by its assets below.
        request_job=job,
        default_status=DefaultSensorStatus.RUNNING,
        description="After a UI run or backfill of this workflow succeeds, run the next ready depth level.",
    )
    def _continue_bottom_up(context: RunStatusSensorContext):
        return _next_level_requests(context, loaded)

    return _continue_bottom_up


def bottom_up_after_failed_threads_sensor(loaded: LoadedProfile, job: Any) -> SensorDefinition:
    """As `bottom_up_sensor`, for runs that failed only because threads failed (``wf/threads_failed``)."""
    workflow_id = loaded.profile.workflow_id

    @run_status_sensor(
        name=f"{workflow_id}_bottom_up_after_failed_threads",
        run_status=DagsterRunStatus.FAILURE,
        request_job=job,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "After a UI run or backfill of this workflow fails because some of its threads failed, "
            "run the next ready depth level (a failed directory does not hold its parent back)."
        ),
    )
    def _continue_after_failed_threads(context: RunStatusSensorContext):
        if THREADS_FAILED_TAG not in context.dagster_run.tags:
            return SkipReason("the run failed for another reason than failed threads")
        return _next_level_requests(context, loaded)

    return _continue_after_failed_threads


def _next_level_requests(context: RunStatusSensorContext, loaded: LoadedProfile) -> Any:
    workflow_id = loaded.profile.workflow_id
    run = context.dagster_run
    tags = run.tags
    if not is_workflow_run(run, workflow_id):
        return SkipReason(f"run materialized no asset of {workflow_id}")
    if _is_replay_run(run, workflow_id):
        return SkipReason("a replay writes nothing live: there is no level to continue")
    if tags.get(LAUNCHED_BY_TAG) == "cli":
        return SkipReason("the CLI runs its levels itself")
    keys = {
        tags.get(k)
        for k in (PARTITION_NAME_TAG, ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
    }
    keys.discard(None)
    if not keys:
        return SkipReason("run has no target partitions")
    with RuntimeEnv.open(Settings.from_env()) as env:
        roots: set[Path] = set()
        for key in keys:
            try:
                roots.add(resolve_target(env.records, key).root)
            except RunError:
                continue  # a partition added by hand that no tree registered
        requests = []
        for root in sorted(roots):
            level = next_ready_level(env, loaded, root)
            if not level:
                continue
            requests.append(
                RunRequest(
                    run_key=f"{run.run_id}:{level[0].key}",
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: level[0].key,
                        ASSET_PARTITION_RANGE_END_TAG: level[-1].key,
                        CONTINUES_TAG: run.run_id,
                    },
                )
            )
    return requests or SkipReason("no directory is ready: the tree is done or waiting")


def _is_replay_run(run: Any, workflow_id: str) -> bool:
    """Whether ``run`` (a `DagsterRun`) ran only the workflow's replay asset: its replay job, or a
    launch of that asset alone from the asset graph (Dagster's implicit asset job)."""
    if run.job_name == replay_job_name(workflow_id):
        return True
    selection = set(run.asset_selection or ())
    return bool(selection) and selection <= {replay_asset_key(workflow_id)}
