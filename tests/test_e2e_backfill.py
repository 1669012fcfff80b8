"""Batched backfills: few Dagster runs, bottom-up order, concurrency, per-thread gate blocking."""

from __future__ import annotations

import json
import threading
import time

import pytest
from dagster import AssetKey
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from e2e_support import isolated_settings

from wf_pipeline.compiler import build_definitions, open_instance, resolve_job, targets_partitions
from wf_pipeline.errors import ProviderError
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import run_workflow, sync_targets
from wf_pipeline.tree.synthetic import generate_tree

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


class ObservingProvider:
    """The offline provider, with a little latency, counting overlapping calls; fails chosen targets."""

    provider_type = "offline"
    model = "offline-v1"

    def __init__(self, fail_paths: frozenset[str] = frozenset(), latency_s: float = 0.02) -> None:
        self._inner = create_provider("offline")
        self._fail_paths = fail_paths
        self._latency_s = latency_s
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self._lock:
            self._in_flight += 1
            self.calls += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self._latency_s)
            context = json.loads(request.inputs.get("context") or "{}")
            if context.get("target", {}).get("path") in self._fail_paths:
                raise ProviderError("PROVIDER_HTTP_ERROR", "refused for this target", retryable=False)
            return self._inner.complete(request)
        finally:
            with self._lock:
                self._in_flight -= 1


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _turns_by_path(env: RuntimeEnv):
    return {
        t.target_path: (t, env.records.turns_for_thread(t.thread_id))
        for t in env.records.list_threads(WORKFLOW)
    }


def _checked_bottom_up(env: RuntimeEnv) -> int:
    """Every thread completed, none started before all its children's turns ended; pairs checked."""
    by_path = _turns_by_path(env)
    checked = 0
    for path, (thread, turns) in by_path.items():
        assert thread.status == "completed"
        children = [p for p in by_path if p != "." and _parent(p) == path]
        started = min(t.started_at_ms for t in turns)
        for child in children:
            child_end = max(t.ended_at_ms for t in by_path[child][1])
            assert child_end <= started, f"{path} started before its child {child} finished"
            checked += 1
    return checked


def test_backfill_batches_levels_runs_bottom_up_and_concurrently(settings, tmp_path):
    tree = tmp_path / "big"
    generate_tree(tree, directories=41, fanout=4)  # depths 0..3
    provider = ObservingProvider()
    summary = run_workflow(settings, WORKFLOW, tree, provider=provider)
    assert summary.ok
    assert len(summary.threads) == 41
    assert len(summary.dagster_run_ids) == 4  # one run per depth level, not one per target
    assert provider.calls == 4 * 41
    assert provider.max_in_flight > 1  # provider calls overlap inside a turn

    assert _checked_bottom_up(RuntimeEnv.open(settings)) == 40  # every directory but the root is a child

    instance = open_instance(settings)
    runs = instance.get_run_records()
    assert len(runs) == 4
    assert all(r.dagster_run.tags.get(ASSET_PARTITION_RANGE_START_TAG) for r in runs)


def test_a_300_directory_backfill_takes_one_run_per_level_bottom_up(settings, tmp_path):
    tree = tmp_path / "repo"
    generate_tree(tree, directories=300, fanout=4)  # levels of 1/4/16/64/215 directories
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    provider = ObservingProvider(latency_s=0)
    summary = run_workflow(settings, WORKFLOW, tree, provider=provider)
    assert summary.ok and len(summary.threads) == 300
    assert len(summary.dagster_run_ids) == 5
    assert provider.calls == 4 * 300
    assert _checked_bottom_up(RuntimeEnv.open(settings)) == 299
    instance = open_instance(settings)
    runs = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    assert [int(r.dagster_run.tags["wf/targets"]) for r in runs] == [215, 64, 16, 4, 1]
    for turn in ("evidence_map", "verification_report", "readme_struct", "readme_final"):
        assert instance.get_materialized_partitions(AssetKey([WORKFLOW, turn])) == set(keys)


def test_a_failing_target_never_blocks_its_siblings_or_parent(settings, tmp_path):
    tree = tmp_path / "big"
    generate_tree(tree, directories=21, fanout=4)
    bad = "pkg0001/pkg0005"
    summary = run_workflow(settings, WORKFLOW, tree, provider=ObservingProvider(frozenset({bad})))
    statuses = {t.path: t.status for t in summary.threads}
    assert statuses.pop(bad) == "failed"
    assert set(statuses.values()) == {"completed"}, statuses
    env = RuntimeEnv.open(settings)
    failed = next(t for t in env.records.list_threads(WORKFLOW) if t.target_path == bad)
    turns = env.records.turns_for_thread(failed.thread_id)
    assert [(t.turn_id, t.error_code) for t in turns] == [("evidence_gather", "PROVIDER_HTTP_ERROR")]


def test_one_run_over_every_level_never_starts_a_parent_before_its_children(settings, tmp_path):
    """What a single-run backfill of the whole tree from the UI does: leaves first, parents wait."""
    tree = tmp_path / "big"
    generate_tree(tree, directories=6, fanout=5)  # a root and five leaves
    synced = sync_targets(settings, WORKFLOW, tree)
    keys = synced["targets"]
    env = RuntimeEnv.open(settings)
    job = resolve_job(build_definitions(env.catalog, env), WORKFLOW)
    instance = open_instance(settings)
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}

    first = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert first.success
    by_path = _turns_by_path(env)
    assert {p for p, (t, _) in by_path.items() if t.status == "completed"} == {
        k.split("/", 1)[1] for k in keys[:-1]
    }
    # The root waited: no turn, no provider call, and no thread recorded under an identity
    # its children's outputs were about to change.
    assert "." not in by_path
    # The waiting root is no materialization, and no failure either: it is still missing.
    for node in ("evidence_map", "readme_final"):
        materialized = {
            m.partition for m in first.asset_materializations_for_node(f"docs_writer_thread_v1__{node}")
        }
        assert keys[-1] not in materialized
    asset = AssetKey([WORKFLOW, "readme_final"])
    assert instance.get_materialized_partitions(asset) == set(keys[:-1])
    partitions = targets_partitions(WORKFLOW)
    status = instance.get_status_by_partition(asset, keys, partitions)
    assert status[keys[-1]] is None and {status[k].value for k in keys[:-1]} == {"MATERIALIZED"}

    second = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert second.success
    assert _turns_by_path(env)["."][0].status == "completed"


def test_the_bottom_up_sensor_finishes_a_ui_backfill_level_by_level(settings, tmp_path):
    from dagster import DagsterEventType, RunRequest, SkipReason, build_run_status_sensor_context

    tree = tmp_path / "big"
    generate_tree(tree, directories=7, fanout=2)  # depths 0..2
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    env = RuntimeEnv.open(settings)
    defs = build_definitions(env.catalog, env)
    job = resolve_job(defs, WORKFLOW)
    sensor = next(s for s in defs.sensors if s.name == f"{WORKFLOW}_bottom_up")
    instance = open_instance(settings)

    def evaluate(run_result):
        run = instance.get_run_by_id(run_result.run_id)
        (success,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_SUCCESS)
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=success.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
        )
        return sensor(context)

    # A UI backfill over the whole tree: one run; only the deepest level can finish in it.
    run = job.execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        raise_on_error=False,
    )
    runs = 1
    while True:
        result = evaluate(run)
        if isinstance(result, SkipReason):
            break
        (request,) = result
        assert isinstance(request, RunRequest)
        run = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        assert run.success
        runs += 1
    assert runs == 3  # one run per depth level, never one per target
    assert {t.status for t in env.records.list_threads(WORKFLOW)} == {"completed"}
    assert len(env.records.list_threads(WORKFLOW)) == 7
    # The UI run and the sensor's runs wrote every README where the tree's outputs go.
    out = settings.out_dir / keys[-1]
    written = sorted(path.relative_to(out).parent.as_posix() for path in out.rglob("README.md"))
    assert written == sorted(t.target_path for t in env.records.list_threads(WORKFLOW))


def test_a_ui_backfill_with_a_failed_directory_fails_its_run_and_still_finishes_the_tree(settings, tmp_path):
    from dagster import DagsterEventType, RunRequest, SkipReason, build_run_status_sensor_context

    from wf_pipeline.compiler.assets import THREADS_FAILED_TAG

    tree = tmp_path / "big"
    generate_tree(tree, directories=7, fanout=2)  # depths 0..2
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    bad = keys[0].split("/", 1)[1]  # a directory of the deepest level
    env = RuntimeEnv.open(settings, provider=ObservingProvider(frozenset({bad})))
    defs = build_definitions(env.catalog, env)
    job = resolve_job(defs, WORKFLOW)
    sensors = {s.name: s for s in defs.sensors}
    instance = open_instance(settings)

    def evaluate(run_result):
        run = instance.get_run_by_id(run_result.run_id)
        event_type, name = (
            (DagsterEventType.RUN_SUCCESS, f"{WORKFLOW}_bottom_up")
            if run_result.success
            else (DagsterEventType.RUN_FAILURE, f"{WORKFLOW}_bottom_up_after_failed_threads")
        )
        (event,) = instance.all_logs(run.run_id, of_type=event_type)
        context = build_run_status_sensor_context(
            sensor_name=name, dagster_event=event.dagster_event, dagster_instance=instance, dagster_run=run
        )
        return sensors[name](context)

    run = job.execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        raise_on_error=False,
    )
    # The failed directory fails the run, which says so in a tag; its siblings are documented.
    assert not run.success
    assert instance.get_run_by_id(run.run_id).tags[THREADS_FAILED_TAG] == "1"
    runs = 1
    while True:
        result = evaluate(run)
        if isinstance(result, SkipReason):
            break
        (request,) = result
        assert isinstance(request, RunRequest)
        run = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        assert run.success
        runs += 1
    assert runs == 3  # the failed child did not hold its parent back
    statuses = {t.target_path: t.status for t in env.records.list_threads(WORKFLOW)}
    assert statuses.pop(bad) == "failed"
    assert set(statuses.values()) == {"completed"} and len(statuses) == 6
    asset = AssetKey([WORKFLOW, "readme_final"])
    assert instance.get_materialized_partitions(asset) == set(keys) - {keys[0]}
    status = instance.get_status_by_partition(asset, [keys[0]], targets_partitions(WORKFLOW))
    assert status[keys[0]].value == "FAILED"
