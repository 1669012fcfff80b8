"""Sensors: a backfill launched from the UI finishes bottom-up on its own.

A single-run backfill over a whole tree runs its leaves; their parents wait (the runtime
skips a directory whose children have not finished). When such a run succeeds, or fails
only because some of its threads failed (it carries the ``wf/threads_failed`` tag; a
failed child is settled, so its parent may go ahead), a sensor requests the next ready
depth level as one run, until the tree is done. A run that failed for any other reason
is not continued (its level would only fail again). Runs the CLI launches level by level
itself carry a tag and are left alone, and so are replays (`wf_pipeline.compiler.replay`):
a replay writes nothing live, so its run must not start the documenting of the tree.

Chained workflows: a profile that declares ``activates:`` gets an activation sensor
(`activation_sensor`) that starts the activated workflow on a tree's root once the
condition holds, once per tree and upstream state (docs/specs/chained-workflows-and-agents.md).
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
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from wf_pipeline.compiler.assets import THREADS_FAILED_TAG, is_workflow_run, job_name, targets_partitions
from wf_pipeline.compiler.replay import replay_asset_key, replay_job_name
from wf_pipeline.errors import RunError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import RuntimeEnv, next_ready_level, resolve_target
from wf_pipeline.runtime.activations import due_activations, record_activation
from wf_pipeline.settings import Settings

LAUNCHED_BY_TAG = "wf/launched_by"
CONTINUES_TAG = "wf/continues_run"
# Tags of a run an activation started: the activation record and the upstream workflow.
ACTIVATION_TAG = "wf/activation_id"
ACTIVATED_BY_TAG = "wf/activated_by"
# Each tick scans every registered tree: at most once a minute.
ACTIVATION_INTERVAL_S = 60


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


def activation_sensor_name(workflow_id: str) -> str:
    """The name of the activation sensor of the upstream workflow ``workflow_id``."""
    return f"{workflow_id}_activations"


def activation_sensor(
    loaded: LoadedProfile, jobs: dict[str, Any], env: RuntimeEnv | None = None
) -> SensorDefinition:
    """The sensor that starts the workflows ``loaded`` activates (its ``activates:``), on each tree's root.

    The granularity differs (the upstream runs one partition per directory, the activated
    workflow on the root's partition), so no asset dependency can express it: every tick
    judges each registered tree (`wf_pipeline.runtime.activations.due_activations`),
    records each activation that holds and is new, and requests the activated workflow's
    job on the tree's root partition with the activation id as run key. A second tick on
    the same upstream state finds it recorded and requests nothing.

    Args:
        loaded: the upstream profile; it declares at least one activation.
        jobs: workflow id -> its asset job (unresolved), every activated workflow included.
        env: an open runtime (CLI and tests); None opens one per tick from WF_ settings.

    Returns:
        The `SensorDefinition`, running by default, named `activation_sensor_name`.
    """
    workflow_id = loaded.profile.workflow_id
    targets = sorted({entry.workflow for entry in loaded.profile.activates})

    @sensor(
        name=activation_sensor_name(workflow_id),
        jobs=[jobs[target] for target in targets],
        minimum_interval_seconds=ACTIVATION_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"When the activation conditions of {workflow_id} hold on a tree, start "
            f"{', '.join(targets)} on its root (once per tree and upstream state)."
        ),
    )
    def _activate(context: SensorEvaluationContext):
        if env is not None:
            return _activation_requests(env, loaded)
        with RuntimeEnv.open(Settings.from_env()) as opened:
            return _activation_requests(opened, loaded)

    return _activate


def _activation_requests(env: RuntimeEnv, loaded: LoadedProfile) -> Any:
    requests = []
    partitions: dict[str, list[str]] = {}  # activated workflow -> root keys its partitions need
    for tree in env.records.list_trees():
        for activation in due_activations(env, loaded, tree):
            if not record_activation(env, activation):
                continue  # another tick recorded it first: that tick requested the run
            requests.append(
                RunRequest(
                    run_key=activation.activation_id,
                    job_name=job_name(activation.target_workflow_id),
                    partition_key=activation.target_key,
                    tags={
                        ACTIVATION_TAG: activation.activation_id,
                        ACTIVATED_BY_TAG: activation.source_workflow_id,
                    },
                )
            )
            partitions.setdefault(activation.target_workflow_id, []).append(activation.target_key)
    if not requests:
        return SkipReason("no activation condition newly holds on any registered tree")
    # The root may never have been a partition of the activated workflow: add it with the request.
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            targets_partitions(workflow_id).build_add_request(sorted(set(keys)))
            for workflow_id, keys in sorted(partitions.items())
        ],
    )
