"""The wf_retention job in Dagster: its schedule and trigger sensor request runs, and its history prune
deletes old workflow runs but never the run holding a partition's latest materialization, and removes
the partitions of targets that are gone."""

from __future__ import annotations

import shutil
import time

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    build_schedule_context,
    build_sensor_context,
    job,
    op,
)
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.compiler import build_definitions, open_instance, targets_partitions
from wf_pipeline.compiler.history import prune_dagster_history
from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.compiler.maintenance import (
    RETENTION_JOB,
    RETENTION_SCHEDULE,
    RETENTION_SENSOR,
)
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import sync_targets

WORKFLOW = "docs_writer_thread_v1"
ASSET = AssetKey([WORKFLOW, "evidence_map"])


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _defs(settings, tmp_path):
    return build_definitions(load_profiles(settings, tmp_path))


def test_the_daily_schedule_requests_a_retention_run(settings, tmp_path):
    defs = _defs(settings, tmp_path)
    schedule = defs.resolve_schedule_def(RETENTION_SCHEDULE)
    assert schedule.job_name == RETENTION_JOB
    assert schedule.cron_schedule == "0 3 * * *"

    with build_schedule_context(instance=open_instance(settings)) as context:
        result = schedule.evaluate_tick(context)

    assert [request.job_name or schedule.job_name for request in result.run_requests] == [RETENTION_JOB]


def _materializing_job(name: str, partitions: list[str]):
    """A real Dagster job that reports materializations of ``partitions`` of the workflow's first asset."""

    @op(name=f"{name}_op")
    def _materialize(context):
        for key in partitions:
            context.log_event(AssetMaterialization(asset_key=ASSET, partition=key))

    @job(name=name)
    def _job():
        _materialize()

    return _job


def _run(instance, name: str, partitions: list[str]) -> str:
    result = _materializing_job(name, partitions).execute_in_process(instance=instance)
    assert result.success
    return result.run_id


def test_history_prune_keeps_latest_materializations_and_removes_gone_partitions(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO, tmp_path / "tree")
    synced = sync_targets(settings, WORKFLOW, tree)
    keys = synced["targets"]
    assert len(keys) >= 3, keys
    instance = open_instance(settings)
    name = targets_partitions(WORKFLOW).name
    gone_key = next(key for key in keys if "/" in key)  # a directory below the root
    kept_key, other_key = [key for key in keys if key != gone_key][:2]
    workflow_job = f"{WORKFLOW}_job"

    first = _run(instance, workflow_job, [kept_key, other_key])  # latest for kept_key: no
    holds_latest = _run(instance, workflow_job, [kept_key])  # latest for kept_key: yes
    superseded = _run(instance, workflow_job, [other_key])  # superseded by `recent` below
    only_gone = _run(instance, workflow_job, [gone_key])  # its partition's target disappears
    unrelated = _run(instance, "some_other_job", [other_key])  # not a workflow run: never touched
    time.sleep(0.05)
    cutoff_ms = int(time.time() * 1000)
    time.sleep(0.05)
    recent = _run(instance, workflow_job, [other_key])  # inside the window

    # The gone target's directory is deleted from the tree.
    shutil.rmtree(tree / synced_path(settings, gone_key))

    with RuntimeEnv.open(settings) as env:
        result = prune_dagster_history(
            instance, env.records, env.catalog.all(), {WORKFLOW: 1000}, now_ms=cutoff_ms + 1000
        )

    assert gone_key not in instance.get_dynamic_partitions(name)
    assert set(instance.get_dynamic_partitions(name)) == set(keys) - {gone_key}
    remaining = {record.dagster_run.run_id for record in instance.get_run_records()}
    assert {holds_latest, recent, unrelated} <= remaining
    assert not {first, superseded, only_gone} & remaining
    assert (result.runs_deleted, result.runs_kept_latest, result.partitions_removed) == (3, 1, 1)
    # The event log still gives each remaining partition its latest materialization.
    assert {kept_key, other_key} <= instance.get_materialized_partitions(ASSET)
    assert instance.get_run_by_id(first) is None
    assert not instance.all_logs(first)


def synced_path(settings, key: str) -> str:
    with RuntimeEnv.open(settings) as env:
        return env.records.get_target(key).path


def test_history_prune_without_a_window_keeps_every_run(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO, tmp_path / "tree")
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    instance = open_instance(settings)
    run_ids = [_run(instance, f"{WORKFLOW}_job", [key]) for key in keys[:2]]
    run_ids.append(_run(instance, f"{WORKFLOW}_job", keys[:1]))

    with RuntimeEnv.open(settings) as env:
        result = prune_dagster_history(
            instance,
            env.records,
            env.catalog.all(),
            {WORKFLOW: None},
            now_ms=int(time.time() * 1000) + 10_000,
        )

    assert result.runs_deleted == 0 and result.partitions_removed == 0
    assert all(instance.get_run_by_id(run_id) is not None for run_id in run_ids)


def test_the_trigger_skips_while_a_retention_run_is_unfinished(settings, tmp_path):
    defs = _defs(settings, tmp_path)
    sensor = defs.resolve_sensor_def(RETENTION_SENSOR)
    instance = open_instance(settings)
    retention = defs.resolve_job_def(RETENTION_JOB)
    queued = instance.create_run_for_job(retention)  # NOT_STARTED: created, not finished

    with build_sensor_context(instance=instance) as context:
        result = sensor.evaluate_tick(context)

    assert not result.run_requests
    assert queued.run_id in (result.skip_message or "")
