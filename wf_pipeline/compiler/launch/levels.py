"""Level scheduling: one Dagster run per depth level of a tree, deepest first.

A directory's context includes the outputs its children produced in the level before,
so levels run bottom-up. Inside a run every turn handles all of the level's targets,
with concurrent provider calls. A level's run covers the level's contiguous partition
range; its finished threads are reused inside the run at no provider cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, RunsFilter, build_reconstructable_job, execute_job
from dagster._core.events import RunFailureReason
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    RUN_FAILURE_REASON_TAG,
)

from wf_pipeline.compiler.assets import THREAD_TAG, targets_partitions, turn_asset_key
from wf_pipeline.compiler.definitions import build_definitions, resolve_job
from wf_pipeline.compiler.launch import executors
from wf_pipeline.compiler.launch.event_log import dynamic_partitions_snapshot
from wf_pipeline.compiler.launch.executors import runtime_run_config, validated_executor_config
from wf_pipeline.compiler.launch.instance import (
    PROCESS_ENDED_TAG,
    fail_runs_of_this_process,
    home_lock,
    launcher_tags,
    open_instance,
)
from wf_pipeline.compiler.sensors import LAUNCHED_BY_TAG
from wf_pipeline.errors import RUN_INTERRUPTED, RunError
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.profiles import ProfileCatalog
from wf_pipeline.runtime import RunPlan, RuntimeEnv, ThreadPlan, replan, target_depth
from wf_pipeline.settings import Settings

Progress = Callable[[int, int], None]
LevelRunner = Callable[[DagsterInstance, Mapping[str, str]], str]

# Run logs go to the instance (and the UI); the terminal shows progress, not engine chatter.
QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Launched:
    """The runs one launch started: ``started_ms`` (ms since the epoch) and Dagster run ids, in order."""

    started_ms: int = field(default_factory=now_ms)
    ids: list[str] = field(default_factory=list)


def sync_partitions(instance: DagsterInstance, workflow_id: str, keys: Sequence[str]) -> None:
    """Make ``keys`` (one tree's targets, deepest first) the workflow's partitions, in that order.

    Dagster runs take contiguous partition ranges, so each depth level of a tree must be a
    contiguous block: the tree's keys are (re)added after every other key, in bottom-up
    order. Re-adding a key keeps its materialization history. The read, deletes and adds
    run under the home's lock (`instance.home_lock`), so processes syncing the same tree at
    once never add a key twice (a UNIQUE constraint failure in Dagster's storage).
    """
    name = targets_partitions(workflow_id).name
    with home_lock(Path(instance.root_directory)):
        existing = instance.get_dynamic_partitions(name)
        ours = set(keys)
        desired = [key for key in existing if key not in ours] + list(keys)
        if existing == desired:
            return
        for key in existing:
            if key in ours:
                instance.delete_dynamic_partition(name, key)
        instance.add_dynamic_partitions(name, list(keys))


def unrecorded_keys(instance: DagsterInstance, plan: RunPlan) -> set[str]:
    """The plan's partition keys some turn asset has no finished materialization for.

    A key counts when an asset never materialized it, or when its latest attempt belongs
    to a run still in progress or to a run whose process died (``wf/process_ended``).
    """
    workflow_id = plan.loaded.profile.workflow_id
    keys = {entry.target.key for entry in plan.threads}
    unfinished = {
        record.dagster_run.run_id
        for record in instance.get_run_records(filters=RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))
    } | {
        # Runs whose process died, marked failed on open: their steps never finished either.
        record.dagster_run.run_id
        for record in instance.get_run_records(filters=RunsFilter(tags={PROCESS_ENDED_TAG: "true"}))
    }
    events = instance.event_log_storage
    missing: set[str] = set()
    for turn in plan.loaded.profile.ordered_turns():
        asset_key = turn_asset_key(workflow_id, turn.output_type)
        missing |= keys - instance.get_materialized_partitions(asset_key)
        attempts = events.get_latest_asset_partition_materialization_attempts_without_materializations(
            asset_key
        )
        missing |= {key for key, (run_id, _) in attempts.items() if key in keys and run_id in unfinished}
    return missing


def depth_levels(entries: Sequence[ThreadPlan]) -> list[list[ThreadPlan]]:
    """Threads grouped by directory depth, deepest level first (the order they must run in)."""
    levels: dict[int, list[ThreadPlan]] = {}
    for entry in entries:
        depth = target_depth(entry.target)
        levels.setdefault(depth, []).append(entry)
    return [levels[depth] for depth in sorted(levels, reverse=True)]


def launch_levels(
    settings: Settings,
    env: RuntimeEnv,
    catalog: ProfileCatalog,
    plan: RunPlan,
    pending: Sequence[ThreadPlan],
    on_progress: Progress | None,
    *,
    workspace_dir: Path | None,
    resume: ThreadPlan | None = None,
) -> Launched:
    """One Dagster run per depth level that has pending threads, deepest level first.

    ``pending`` are the plan's threads to run; ``on_progress(done, total)`` counts threads.
    ``resume`` runs that one thread alone. Returns the runs started. Raises the
    executor's ``CONFIG_*`` errors before any run starts, and ``RUN_INTERRUPTED`` after a
    run a signal stopped (no later level starts).
    """
    launched = Launched()
    total = len(plan.threads)
    done = total - len(pending)
    if on_progress:
        on_progress(done, total)
    workflow_id = plan.loaded.profile.workflow_id
    instance = open_instance(settings)
    # A run killed after its turns committed but before Dagster recorded the step leaves
    # partitions unmaterialized, or "in progress" for good; their levels run again, at no
    # provider cost since every turn is reused.
    unrecorded = set() if resume is not None else unrecorded_keys(instance, plan)
    if not pending and not unrecorded:
        return launched
    sync_partitions(instance, workflow_id, [entry.target.key for entry in plan.threads])
    run_level = level_runner(settings, env, catalog, workflow_id, workspace_dir or Path.cwd())
    pending_keys = {entry.target.key for entry in pending}
    for level in depth_levels(plan.threads):
        if resume is None:
            # A parent's thread depends on its children's outputs, known only now that the
            # deeper levels have run: plan the level again when it starts.
            level = replan(env, plan.loaded, plan.scan, [entry.target for entry in level])
            pending_keys |= {entry.target.key for entry in level if not entry.reusable}
        level_pending = sum(1 for entry in level if entry.target.key in pending_keys)
        if not level_pending and not any(entry.target.key in unrecorded for entry in level):
            continue
        if resume is not None:
            tags = {THREAD_TAG: resume.thread.thread_id, PARTITION_NAME_TAG: resume.target.key}
        else:
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: level[0].target.key,
                ASSET_PARTITION_RANGE_END_TAG: level[-1].target.key,
            }
        # The bottom-up sensor leaves CLI runs alone: the CLI launches every level itself.
        # The process's host and pid let the next open of the instance fail the run if this
        # process dies before Dagster records its end (`instance.fail_runs_of_ended_processes`).
        try:
            run_id = run_level(
                instance,
                {**tags, "wf/targets": str(len(level)), LAUNCHED_BY_TAG: "cli", **launcher_tags()},
            )
        except BaseException:
            if env.interrupt.is_set():
                # Stopped before Dagster took charge of the run: it would stay NOT_STARTED.
                fail_runs_of_this_process(instance)
            raise
        launched.ids.append(run_id)
        _stop_if_interrupted(instance, env, run_id)
        done = min(total, done + level_pending)
        if on_progress:
            on_progress(done, total)
    return launched


def _stop_if_interrupted(instance: DagsterInstance, env: RuntimeEnv, run_id: str) -> None:
    """Raise ``RUN_INTERRUPTED`` when a signal stopped the run ``run_id``; no later level starts.

    The runtime sets ``env.interrupt`` when the signal reached a step; a signal Dagster
    took between steps shows as the run's failure reason instead (``UNEXPECTED_TERMINATION``).
    """
    run = instance.get_run_by_id(run_id)
    if (
        run is not None
        and run.tags.get(RUN_FAILURE_REASON_TAG) == RunFailureReason.UNEXPECTED_TERMINATION.value
    ):
        env.interrupt.set()
    if env.interrupt.is_set():
        raise RunError(
            RUN_INTERRUPTED, f"run {run_id} was interrupted; no further level is started", run_id=run_id
        )


def level_runner(
    settings: Settings, env: RuntimeEnv, catalog: ProfileCatalog, workflow_id: str, workspace_dir: Path
) -> LevelRunner:
    """How one level's run executes under ``settings.executor``; the runner returns the run id.

    In process, the steps use ``env`` (provider object included). Out of process, each
    step rebuilds the job (`executors.reconstruct_profile_job`) and opens its runtime from
    the run's resource config. The job is built from ``catalog``'s profile of the workflow:
    for a resume, the thread's pinned profile (out of process: named by its snapshot id,
    which each step reads back from the CAS). Raises ``CONFIG_BAD_EXECUTOR``,
    ``CONFIG_EXECUTOR_UNAVAILABLE`` or ``CONFIG_BAD_EXECUTOR_CONFIG`` before any run starts.
    """
    if settings.executor == "in_process":
        job = resolve_job(build_definitions(catalog, env), workflow_id)

        def run_in_process(instance: DagsterInstance, tags: Mapping[str, str]) -> str:
            # The partitions were synced before the first level: the run reads them once.
            with dynamic_partitions_snapshot(instance, targets_partitions(workflow_id).name):
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG, tags=dict(tags)
                )
            return result.run_id

        return run_in_process

    # A missing integration or a config that does not fit fails before any run starts.
    execution_config = validated_executor_config(settings)
    reconstructable_job = build_reconstructable_job(
        executors.__name__,
        executors.reconstruct_profile_job.__name__,
        reconstructable_kwargs={
            "workflow_id": workflow_id,
            "workspace_dir": str(workspace_dir.resolve()),
            "executor": settings.executor,
            "settings_values": settings.launch_values(),
            # A resumed thread's pinned profile: every step process rebuilds the job from it.
            "profile_artifact_id": catalog.get(workflow_id).snapshot_id,
        },
    )
    run_config = {
        **QUIET_RUN_CONFIG,
        **runtime_run_config(settings),
        "execution": {"config": execution_config},
    }

    def run_out_of_process(instance: DagsterInstance, tags: Mapping[str, str]) -> str:
        result = execute_job(reconstructable_job, instance=instance, run_config=run_config, tags=dict(tags))
        return result.run_id

    return run_out_of_process
