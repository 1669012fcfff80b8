"""The embedded instance's event log stores exactly what Dagster's own SQLite storage stores.

The same partitioned job (a batched step with per-partition metadata, a downstream asset
and an asset check) runs on a plain Dagster SQLite instance and on one whose event log is
`BatchedSqliteEventLogStorage`, both with Dagster's event batching on through the
instance's configuration (`WfDagsterInstance`); everything the UI and the runtime read
back must agree.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DynamicPartitionsDefinition,
    MaterializeResult,
    asset,
    materialize,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from e2e_support import isolated_settings

from wf_pipeline.compiler import open_instance as wf_open_instance
from wf_pipeline.compiler.launch.event_log import BatchedSqliteEventLogStorage, dynamic_partitions_snapshot
from wf_pipeline.compiler.launch.instance import DEFAULT_EVENT_BATCH_SIZE, WfDagsterInstance

PARTITIONS = DynamicPartitionsDefinition(name="dirs")
KEYS = [f"tree/d{i:02d}" for i in range(12)]


@asset(
    partitions_def=PARTITIONS,
    check_specs=[AssetCheckSpec("gate", asset="first", blocking=True)],
)
def first(context: AssetExecutionContext):
    for key in context.partition_keys:
        context.add_asset_metadata({"artifact_id": f"sha-{key}", "bytes": len(key)}, partition_key=key)
    yield MaterializeResult(metadata={"targets": len(context.partition_keys)})
    yield AssetCheckResult(
        check_name="gate", passed=True, metadata={"evaluated": len(context.partition_keys)}
    )


@asset(partitions_def=PARTITIONS, deps=[first])
def second(context: AssetExecutionContext):
    for key in context.partition_keys:
        context.add_asset_metadata({"turn_seq": 2}, partition_key=key)
    return MaterializeResult()


def open_instance(home: Path, *, batched: bool, **storage_config) -> DagsterInstance:
    config: dict = {
        "instance_class": {"module": "wf_pipeline.compiler.launch.instance", "class": "WfDagsterInstance"},
        "event_batch_size": 1000,
        "telemetry": {"enabled": False},
    }
    if batched:
        config["event_log_storage"] = {
            "module": "wf_pipeline.compiler.launch.event_log",
            "class": "BatchedSqliteEventLogStorage",
            "config": {"base_dir": str(home / "history" / "runs"), **storage_config},
        }
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


def run_level(instance: DagsterInstance, keys: list[str]) -> None:
    result = materialize(
        [first, second],
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    assert result.success


def what_the_instance_shows(instance: DagsterInstance) -> dict:
    shown: dict = {}
    for name in ("first", "second"):
        asset_key = AssetKey(name)
        shown[name, "materialized"] = sorted(instance.get_materialized_partitions(asset_key))
        for key in KEYS:
            latest = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
            ).records
            materialization = latest[0].asset_materialization if latest else None
            # Metadata and tag names: run ids and timestamps differ between the instances.
            shown[name, key] = materialization and (
                dict(materialization.metadata),
                sorted(materialization.tags),
            )
        shown[name, "events"] = len(instance.fetch_materializations(asset_key, limit=100).records)
        shown[name, "planned"] = sum(
            record.asset_key == asset_key
            for run in instance.get_run_records()
            for record in instance.get_records_for_run(
                run.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
        )
        shown[name, "asset_record"] = [
            record.asset_entry.last_materialization_record.event_log_entry.dagster_event.partition
            for record in instance.get_asset_records([asset_key])
        ]
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key([next(iter(first.check_keys))])
    shown["check"] = [
        (execution.status.value, execution.event.dagster_event.event_type_value)
        for execution in check.values()
    ]
    return shown


def run_database_schemas(home: Path) -> set:
    """Tables, indexes and alembic stamp of each run's database (all alike)."""
    schemas = set()
    for path in (home / "history" / "runs").glob("*.db"):
        if path.name == "index.db":
            continue
        with sqlite3.connect(path) as conn:
            objects = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
            stamp = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            journal = conn.execute("PRAGMA journal_mode").fetchone()
        schemas.add((tuple(objects), tuple(stamp), journal))
    return schemas


@pytest.fixture
def batching(monkeypatch):
    # Dagster's own SQLite storage, the reference, reads this one from the environment only;
    # the instance's batch size is its configuration, for both.
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")


def test_batched_storage_stores_what_dagsters_storage_stores(tmp_path, batching, monkeypatch):
    batch_sizes = []
    store_batch = BatchedSqliteEventLogStorage.store_event_batch

    def counted(storage, events):
        batch_sizes.append(len(events))
        store_batch(storage, events)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", counted)
    shown = {}
    for batched in (False, True):
        instance = open_instance(tmp_path / f"batched-{batched}", batched=batched)
        assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage) is batched
        instance.add_dynamic_partitions(PARTITIONS.name, KEYS)
        run_level(instance, KEYS[:8])  # a batch of eight, then one of four
        run_level(instance, KEYS[8:])
        shown[batched] = what_the_instance_shows(instance)
        shown[batched]["run databases"] = run_database_schemas(tmp_path / f"batched-{batched}")
        instance.dispose()
    assert shown[True]["first", "materialized"] == KEYS
    assert shown[True]["first", KEYS[3]][0]["artifact_id"].value == f"sha-{KEYS[3]}"
    assert shown[True]["first", "events"] == len(KEYS)
    assert shown[True]["first", "planned"] == 2  # one per run: the partition subset in one event
    # The asset's row holds the latest event stored: one of the last batch (Dagster's order).
    assert shown[True]["first", "asset_record"][0] in KEYS[8:]
    assert (
        len(shown[True]["run databases"]) == 1
        and shown[True]["run databases"] == shown[False]["run databases"]
    )
    assert shown[True] == shown[False]
    # Both runs' materializations went through as batches: 8 and 4 partitions per step.
    assert sorted(size for size in batch_sizes if size in (4, 8)) == [4, 4, 8, 8]


def test_a_reopened_instance_reads_the_batched_events(tmp_path, batching):
    instance = open_instance(tmp_path / "home", batched=True)
    instance.add_dynamic_partitions(PARTITIONS.name, KEYS)
    run_level(instance, KEYS)
    instance.dispose()
    reopened = DagsterInstance.from_config(str(tmp_path / "home"))
    assert sorted(reopened.get_materialized_partitions(AssetKey("second"))) == KEYS
    assert reopened.get_run_records()[0].dagster_run.is_success


def test_a_snapshot_serves_partition_lookups_from_one_read(tmp_path):
    instance = open_instance(tmp_path / "home", batched=True)
    other_process = DagsterInstance.from_config(str(tmp_path / "home"))
    instance.add_dynamic_partitions(PARTITIONS.name, KEYS[:2])
    with dynamic_partitions_snapshot(instance, PARTITIONS.name):
        other_process.add_dynamic_partitions(PARTITIONS.name, [KEYS[2]])
        assert instance.get_dynamic_partitions(PARTITIONS.name) == KEYS[:2]
        assert not instance.has_dynamic_partition(PARTITIONS.name, KEYS[2])
        assert instance.has_dynamic_partition(PARTITIONS.name, KEYS[1])
        # Only this context sees the snapshot; other partition definitions are read as usual.
        assert instance.get_dynamic_partitions("other") == []
    assert instance.get_dynamic_partitions(PARTITIONS.name) == KEYS[:3]
    assert instance.has_dynamic_partition(PARTITIONS.name, KEYS[2])


def test_wiping_the_instance_drops_its_connections(tmp_path, batching):
    instance = open_instance(tmp_path / "home", batched=True)
    instance.add_dynamic_partitions(PARTITIONS.name, KEYS)
    run_level(instance, KEYS[:4])
    instance.wipe()
    instance.add_dynamic_partitions(PARTITIONS.name, KEYS)
    assert not list((tmp_path / "home" / "history" / "runs").glob("[!i]*.db"))
    run_level(instance, KEYS[4:8])  # the run databases are created afresh, not written through stale handles
    assert sorted(instance.get_materialized_partitions(AssetKey("first"))) == KEYS[4:8]


def test_the_batched_storage_plans_partition_subsets_by_its_own_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    counts = {}
    for emit in (True, False):
        instance = open_instance(
            tmp_path / f"emit-{emit}", batched=True, emit_partition_subset_in_planned_events=emit
        )
        assert (
            instance.event_log_storage.supports_partition_subset_in_asset_materialization_planned_events
            is emit
        )
        instance.add_dynamic_partitions(PARTITIONS.name, KEYS)
        run_level(instance, KEYS[:8])
        counts[emit] = what_the_instance_shows(instance)["first", "planned"]
        instance.dispose()
    assert counts == {True: 1, False: 8}  # one event for the run's subset, or one per partition


def test_the_embedded_instance_uses_the_batched_event_log(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    instance = wf_open_instance(settings)
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    # Batching is the instance's configuration: every process that loads it batches alike.
    assert isinstance(instance, WfDagsterInstance)
    assert instance._get_event_batch_size() == DEFAULT_EVENT_BATCH_SIZE
    # Where Dagster's default SQLite storage keeps event logs, next to its run storage.
    assert (settings.dagster_home / "history" / "runs" / "index.db").exists()
    assert (settings.dagster_home / "history" / "runs.db").exists()


def test_a_home_of_an_earlier_release_is_upgraded_and_keeps_its_runs(tmp_path, monkeypatch, batching):
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    settings.dagster_home.mkdir(parents=True)
    config = settings.dagster_home / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n")
    earlier = DagsterInstance.from_config(str(settings.dagster_home))
    assert not isinstance(earlier.event_log_storage, BatchedSqliteEventLogStorage)
    earlier.add_dynamic_partitions(PARTITIONS.name, KEYS)
    run_level(earlier, KEYS[:4])
    earlier.dispose()

    instance = wf_open_instance(settings)
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    assert sorted(instance.get_materialized_partitions(AssetKey("second"))) == KEYS[:4]
    run_level(instance, KEYS[4:])
    assert sorted(instance.get_materialized_partitions(AssetKey("second"))) == KEYS


def test_a_dagster_yaml_of_the_users_is_left_as_it_is(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    settings.dagster_home.mkdir(parents=True)
    own = "telemetry:\n  enabled: false\n"
    (settings.dagster_home / "dagster.yaml").write_text(own)
    instance = wf_open_instance(settings)
    assert (settings.dagster_home / "dagster.yaml").read_text() == own
    assert not isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)


def test_a_home_of_the_previous_release_is_rewritten_and_its_module_path_still_loads(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    settings.dagster_home.mkdir(parents=True)
    config = settings.dagster_home / "dagster.yaml"
    previous = yaml.safe_dump(
        {
            "telemetry": {"enabled": False},
            "python_logs": {"python_log_level": "INFO"},
            "event_log_storage": {
                "module": "wf_pipeline.compiler.event_log",
                "class": "BatchedSqliteEventLogStorage",
                "config": {"base_dir": str(settings.dagster_home.resolve() / "history" / "runs")},
            },
        },
        sort_keys=False,
    )
    config.write_text(previous)
    # A process that reads the file before the CLI rewrites it (the UI, the daemon) still loads it.
    earlier = DagsterInstance.from_config(str(settings.dagster_home))
    assert isinstance(earlier.event_log_storage, BatchedSqliteEventLogStorage)
    earlier.add_dynamic_partitions(PARTITIONS.name, KEYS)
    run_level(earlier, KEYS[:4])
    earlier.dispose()

    instance = wf_open_instance(settings)
    assert "wf_pipeline.compiler.launch.event_log" in config.read_text()
    assert isinstance(instance, WfDagsterInstance)
    assert sorted(instance.get_materialized_partitions(AssetKey("second"))) == KEYS[:4]


# Each process opens the home as `wf` does, then lists its runs through the opened instance.
_OPEN_HOME = """
import sys
from wf_pipeline.compiler import open_instance
from wf_pipeline.settings import Settings
instance = open_instance(Settings.from_env({"WF_HOME": sys.argv[1]}))
instance.get_runs()
"""


def test_processes_opening_a_new_home_at_once_all_succeed_and_print_nothing(tmp_path):
    """First opens create Dagster's storages and migrate them; concurrent ones must not collide."""
    home = tmp_path / "wf-home"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_HOME, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outcomes = [(process.wait(timeout=120), *process.communicate()) for process in processes]
    assert [(code, out, err) for code, out, err in outcomes if code != 0] == []
    # --json output depends on it: migrations print no progress.
    assert {out for _, out, _ in outcomes} == {b""}
    assert (home / "dagster" / ".wf-instance-ready").exists()
