"""The wf_retention job in Dagster: its schedule and trigger sensor request runs, and its history prune
deletes old workflow runs but never the run holding a partition's latest materialization, and removes
the partitions of targets that are gone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterRunStatus,
    RunsFilter,
    build_schedule_context,
    build_sensor_context,
    job,
    op,
)
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings
from postgres_support import fresh_database, postgres_settings

from wf_pipeline.compiler import open_instance, targets_partitions
from wf_pipeline.compiler.history import prune_dagster_history
from wf_pipeline.compiler.maintenance import (
    BYTES_FREED_TAG,
    DELETED_TAG,
    RETENTION_JOB,
    RETENTION_SCHEDULE,
    RETENTION_SENSOR,
    TRIGGER_BYTES_TAG,
)
from wf_pipeline.errors import CONFIG_BAD_NUMBER, ConfigError
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import code_location, run_workflow, sync_targets
from wf_pipeline.settings import DEFAULT_RETENTION_TRIGGER_BYTES, Settings

WORKFLOW = "docs_writer_thread_v1"
ASSET = AssetKey([WORKFLOW, "evidence_map"])


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_settings(request, tmp_path, monkeypatch):
    """Settings of a home whose Dagster instance and records are SQLite, or PostgreSQL (a fresh database)."""
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        yield isolated_settings(monkeypatch, tmp_path / "home")
        return
    with fresh_database() as database:
        yield postgres_settings(monkeypatch, tmp_path / "home", database)


def _defs(settings, tmp_path):
    """The code location's Definitions, as the UI and the daemon load them."""
    return code_location(settings, tmp_path)


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


def test_history_prune_keeps_latest_materializations_and_removes_gone_partitions(any_settings, tmp_path):
    settings = any_settings
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
    shutil.rmtree(tree / _synced_path(settings, gone_key))

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


def _synced_path(settings, key: str) -> str:
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


def _workspace_with_retention(workspace: Path, retention: dict[str, str]) -> None:
    """A workspace layer whose copy of the shipped profile has these retention windows."""
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["retention"] = retention
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def _step_metadata(result, step: str) -> dict[str, object]:
    (event,) = [e for e in result.all_events if e.step_key == step and e.event_type_value == "STEP_OUTPUT"]
    return {name: value.value for name, value in event.event_specific_data.metadata.items()}


@pytest.mark.slow
def test_the_trigger_launches_the_job_which_expires_renders_and_records_its_figures(
    settings, tmp_path, monkeypatch
):
    renders, kept = _expired_renders_home(settings, tmp_path)
    assert renders and kept
    instance = open_instance(settings)
    workflow_runs = [r.dagster_run.run_id for r in instance.get_run_records()]
    assert workflow_runs
    defs = _defs(settings, tmp_path)
    sensor = defs.resolve_sensor_def(RETENTION_SENSOR)

    # Below the threshold: no run.
    monkeypatch.setenv("WF_RETENTION_TRIGGER_BYTES", str(1 << 40))
    with build_sensor_context(instance=instance) as context:
        assert not sensor.evaluate_tick(context).run_requests
    # Past it: one run of wf_retention, whose tags say how many bytes were due.
    monkeypatch.setenv("WF_RETENTION_TRIGGER_BYTES", "1")
    with build_sensor_context(instance=instance) as context:
        (request,) = sensor.evaluate_tick(context).run_requests
        assert context.cursor
    assert (request.job_name or sensor.job_name) == RETENTION_JOB
    due = int(request.tags[TRIGGER_BYTES_TAG])
    assert due > 0

    result = defs.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance, tags=request.tags)

    assert result.success
    applied = _step_metadata(result, "apply_retention_op")
    assert applied["deleted"] == applied["tombstones_written"] >= len(renders)
    # Only prompt renders were due: contexts (1 h) and outputs (forever) stay.
    assert {name for name in applied if name.startswith("deleted_")} == {"deleted_prompt_render"}
    assert applied["bytes_freed"] == due
    with RuntimeEnv.open(settings) as env:
        assert not any(env.cas.exists(artifact_id) for artifact_id in renders)
        assert all(env.cas.exists(artifact_id) for artifact_id in kept - renders)
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags[DELETED_TAG] == str(applied["deleted"]) and tags[BYTES_FREED_TAG] == str(due)
    # The workflow's runs are past their 1 s window, but each holds latest materializations.
    history = _step_metadata(result, "prune_dagster_history_op")
    assert history["runs_deleted"] == 0 and history["runs_kept_latest"] == len(workflow_runs)
    assert all(instance.get_run_by_id(run_id) for run_id in workflow_runs)
    compacted = _step_metadata(result, "compact_op")
    assert compacted["compaction_id"] and compacted["orphans_scanned"] > 0


def test_the_trigger_threshold_is_a_setting_with_a_checked_value():
    assert Settings.from_env({}).retention_trigger_bytes == DEFAULT_RETENTION_TRIGGER_BYTES == 1 << 30
    assert Settings.from_env({"WF_RETENTION_TRIGGER_BYTES": "4096"}).retention_trigger_bytes == 4096
    for bad in ("0", "-1", "1GiB"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"WF_RETENTION_TRIGGER_BYTES": bad})
        assert caught.value.code == CONFIG_BAD_NUMBER
        assert "WF_RETENTION_TRIGGER_BYTES" in str(caught.value)


def _links(env: RuntimeEnv, roles: set[str]) -> set[str]:
    return {
        link.artifact_id
        for thread in env.records.list_threads(WORKFLOW)
        for link in env.records.artifact_links_for_thread(thread.thread_id)
        if link.role in roles
    }


def _expired_renders_home(settings, tmp_path: Path) -> tuple[set[str], set[str]]:
    """A docs-writer run, 2 s ago, whose prompt renders expire after 1 s (contexts after 1 h, outputs never).

    The working directory is the workspace layer holding the profile (the code location's,
    as in the UI and the daemon). Returns the artifact ids of the rendered prompts, and of
    the contexts and outputs.
    """
    _workspace_with_retention(
        tmp_path, {"prompt_render": "1s", "context_payload": "1h", "grace": "1ms", "run_history": "1s"}
    )
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=tmp_path)
    assert summary.threads and all(t.status == "completed" for t in summary.threads)
    with RuntimeEnv.open(settings) as env:
        renders, kept = _links(env, {"rendered_prompt"}), _links(env, {"context", "output"})
    time.sleep(2.1)
    return renders, kept


@pytest.mark.slow
def test_the_daemon_launches_wf_retention_through_the_trigger(settings, tmp_path):
    renders, _ = _expired_renders_home(settings, tmp_path)
    assert renders
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    environ.update(
        WF_HOME=str(settings.home),
        DAGSTER_HOME=str(settings.dagster_home),
        WF_CONFIG_DIR=str(settings.config_dir),
        WF_RETENTION_TRIGGER_BYTES="1",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "dagster-daemon.log"
    instance = open_instance(settings)
    with open(log, "wb") as output:
        # The code location as the daemon loads it, with the working directory as its workspace layer.
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "wf_pipeline.definitions"],
            cwd=tmp_path,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the run workers it starts stop with it
        )
    try:
        deadline = time.monotonic() + 240
        finished = []
        while time.monotonic() < deadline and not finished:
            assert daemon.poll() is None, log.read_text(errors="replace")[-3000:]
            finished = instance.get_run_records(
                filters=RunsFilter(job_name=RETENTION_JOB, statuses=FINISHED_STATUSES)
            )
            time.sleep(1)
        assert finished, f"no {RETENTION_JOB} run finished:\n{log.read_text(errors='replace')[-3000:]}"
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)

    (record,) = finished
    run = record.dagster_run
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags[TRIGGER_BYTES_TAG] == run.tags[BYTES_FREED_TAG] != "0"
    assert int(run.tags[DELETED_TAG]) >= len(renders)
    with RuntimeEnv.open(settings) as env:
        assert not any(env.cas.exists(artifact_id) for artifact_id in renders)
