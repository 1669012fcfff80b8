"""Dagster's own history under retention: old runs of workflows deleted, gone targets' partitions removed.

Dagster keeps every run and its event log for good (automatic pruning is an open request,
dagster-io/dagster#33785). The ``wf_retention`` job calls `prune_dagster_history`, which

- removes a workflow's dynamic partitions whose target no longer exists in a synced tree
  (`gone_partitions`); re-adding a key later keeps whatever history is left
  (`DagsterInstance.add_dynamic_partitions`);
- deletes the finished runs of a workflow created before its ``run_history`` window, with
  their event-log entries (`DagsterInstance.delete_run`), except a run holding the latest
  materialization of any remaining partition of the workflow's assets: Dagster reads a
  partition's status and its last data from that event, so the asset graph shows the same
  partitions materialized after the prune as before. Replay runs (`wf_pipeline.compiler.replay`)
  are runs of the workflow too; the latest replay of each partition is kept the same way.

Runs still queued or in progress are never deleted, whatever their age.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRun, RunsFilter
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from wf_pipeline.compiler.assets import is_workflow_run, targets_partitions, turn_asset_key
from wf_pipeline.compiler.launch.instance import home_lock
from wf_pipeline.compiler.replay import replay_asset_key
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.records import RecordStore

# Storage ids asked for in one event-log query (SQL ``IN`` lists stay short).
_STORAGE_ID_CHUNK = 500


@dataclass(frozen=True)
class HistoryResult:
    """What one prune of Dagster's history did (counts).

    Attributes:
        runs_deleted: runs deleted with their event-log entries.
        runs_kept_latest: runs older than their window kept because they hold the latest
            materialization of a partition.
        partitions_removed: dynamic partitions removed because their target is gone.
    """

    runs_deleted: int = 0
    runs_kept_latest: int = 0
    partitions_removed: int = 0


def gone_partitions(instance: DagsterInstance, records: RecordStore, workflow_id: str) -> list[str]:
    """The workflow's partition keys whose target no longer exists in any synced tree, in partition order.

    A key is gone when no target is registered under it, when its tree is no longer
    registered, or when its directory is no longer a directory on this machine (trees are
    scanned where the code location runs, as the sensors and launches do).

    Args:
        instance: the Dagster instance holding the workflow's dynamic partitions.
        records: the record store of targets and trees.
        workflow_id: the profile's workflow id.

    Returns:
        Partition keys (strings). Raises ``RECORD_UNAVAILABLE`` from the record store.
    """
    trees = {tree.root_path for tree in records.list_trees()}
    targets = {target.target_key: target for target in records.list_targets()}  # one query, not one per key
    gone = []
    for key in instance.get_dynamic_partitions(targets_partitions(workflow_id).name):
        target = targets.get(key)
        if (
            target is None
            or target.root_path not in trees
            or not (Path(target.root_path) / target.path).is_dir()
        ):
            gone.append(key)
    return gone


def latest_materialization_runs(
    instance: DagsterInstance, asset_keys: Iterable[AssetKey], partitions: set[str]
) -> set[str]:
    """Ids of the runs holding the latest materialization of any of ``partitions`` of ``asset_keys``.

    Uses the event log's latest storage id per partition
    (``EventLogStorage.get_latest_storage_id_by_partition``), then those events' runs.
    """
    run_ids: set[str] = set()
    events = instance.event_log_storage
    for asset_key in asset_keys:
        latest = events.get_latest_storage_id_by_partition(asset_key, DagsterEventType.ASSET_MATERIALIZATION)
        storage_ids = sorted(storage_id for key, storage_id in latest.items() if key in partitions)
        for start in range(0, len(storage_ids), _STORAGE_ID_CHUNK):
            chunk = storage_ids[start : start + _STORAGE_ID_CHUNK]
            result = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=asset_key, storage_ids=chunk), limit=len(chunk)
            )
            run_ids.update(record.run_id for record in result.records)
    return run_ids


def prune_dagster_history(
    instance: DagsterInstance,
    records: RecordStore,
    profiles: Iterable[LoadedProfile],
    windows_ms: Mapping[str, int | None],
    *,
    now_ms: int,
) -> HistoryResult:
    """Remove gone targets' partitions, then delete each workflow's finished runs older than its window.

    Args:
        instance: the Dagster instance to prune.
        records: the record store of targets and trees.
        profiles: the workflows whose partitions and runs are pruned.
        windows_ms: workflow id -> its ``run_history`` window in ms; None or a missing
            workflow keeps every run (partitions are still pruned).
        now_ms: the time the windows end, in ms since the epoch.

    Returns:
        A `HistoryResult` with the counts. Raises ``RECORD_UNAVAILABLE`` from the record
        store; Dagster's storage errors pass through.
    """
    profiles = list(profiles)
    removed = 0
    # The same lock `sync_partitions` rewrites a workflow's partitions under.
    with home_lock(Path(instance.root_directory)):
        for loaded in profiles:
            workflow_id = loaded.profile.workflow_id
            name = targets_partitions(workflow_id).name
            for key in gone_partitions(instance, records, workflow_id):
                instance.delete_dynamic_partition(name, key)
                removed += 1
    deleted = kept = 0
    for loaded in profiles:
        workflow_id = loaded.profile.workflow_id
        window = windows_ms.get(workflow_id)
        if window is None:
            continue
        old = _finished_runs_before(instance, workflow_id, now_ms - window)
        if not old:
            continue
        partitions = set(instance.get_dynamic_partitions(targets_partitions(workflow_id).name))
        # A replay run holding a partition's latest replay verdict is kept like a turn's.
        asset_keys = [
            *(turn_asset_key(workflow_id, turn.output_type) for turn in loaded.profile.ordered_turns()),
            replay_asset_key(workflow_id),
        ]
        protected = latest_materialization_runs(instance, asset_keys, partitions)
        for run in old:
            if run.run_id in protected:
                kept += 1
                continue
            instance.delete_run(run.run_id)
            deleted += 1
    return HistoryResult(runs_deleted=deleted, runs_kept_latest=kept, partitions_removed=removed)


def _finished_runs_before(instance: DagsterInstance, workflow_id: str, cutoff_ms: int) -> list[DagsterRun]:
    before = datetime.fromtimestamp(cutoff_ms / 1000, tz=UTC)
    records = instance.get_run_records(filters=RunsFilter(created_before=before, statuses=FINISHED_STATUSES))
    return [record.dagster_run for record in records if is_workflow_run(record.dagster_run, workflow_id)]
