"""The ``telemetry`` asset group on a real Dagster instance: daily growth and headroom
materialized through DuckDB, typed by the pandera models, the growth chart in the
materialization metadata, and a headroom check that warns before writes are rejected."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re

import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetRecordsFilter,
    DefaultScheduleStatus,
    build_schedule_context,
    check_dagster_type,
)
from e2e_support import isolated_settings
from telemetry_support import DAY_MS, png_facts, recorder, write

from wf_pipeline.compiler import open_instance
from wf_pipeline.compiler.definitions import build_definitions
from wf_pipeline.compiler.telemetry import (
    BUDGET_HEADROOM_TYPE,
    GROWTH_ASSET,
    HEADROOM_ASSET,
    HEADROOM_CHECK,
    KEY_GROWTH_TYPE,
    TELEMETRY_GROUP,
    TELEMETRY_JOB,
    TELEMETRY_SCHEDULE,
)
from wf_pipeline.errors import METADATA_BUDGET_EXCEEDED, MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.budgets import Budgets
from wf_pipeline.profiles import default_layers, load_catalog
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.measure import WriteSite, flush_telemetry, record_frame_metadata, record_rejection

pytestmark = pytest.mark.slow

DAY = "2026-03-10"
DAY_NOON_MS = int(dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC).timestamp() * 1000)
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def env(settings, tmp_path):
    with RuntimeEnv.open(settings, workspace_dir=tmp_path) as opened:
        yield opened


@pytest.fixture
def telemetry_job(env, tmp_path):
    defs = build_definitions(load_catalog(default_layers(env.settings, tmp_path)), env)
    return defs, defs.resolve_job_def(TELEMETRY_JOB)


@pytest.fixture
def instance(settings):
    with open_instance(settings) as opened:
        yield opened


def test_the_group_holds_both_daily_assets_and_the_check(telemetry_job):
    defs, job = telemetry_job
    graph = defs.resolve_asset_graph()
    for key in (GROWTH_ASSET, HEADROOM_ASSET):
        node = graph.get(key)
        assert node.group_name == TELEMETRY_GROUP
        assert node.partitions_def.get_partition_keys()[0] == "2026-01-01"
    assert {c.name for c in graph.get(HEADROOM_ASSET).check_keys} == {HEADROOM_CHECK}
    # The profiles' jobs are still there next to the telemetry job.
    assert {j.name for j in defs.resolve_all_job_defs()} >= {TELEMETRY_JOB, "docs_writer_thread_v1_job"}
    assert job.partitions_def is not None


def test_pandera_models_are_the_dagster_types():
    good = pd.DataFrame(
        {
            "day": [pd.Timestamp(DAY)],
            "source": ["metadata_writes"],
            "domain": ["runtime"],
            "key": ["model"],
            "writes": [3],
            "bytes": [30],
            "rejected": [0],
            "removed_bytes": [0],
        }
    )
    assert check_dagster_type(KEY_GROWTH_TYPE, good).success
    assert not check_dagster_type(KEY_GROWTH_TYPE, good.assign(bytes=[-1])).success
    assert not check_dagster_type(KEY_GROWTH_TYPE, good.drop(columns=["key"])).success
    assert not check_dagster_type(BUDGET_HEADROOM_TYPE, good).success


def test_both_assets_materialize_one_day_partition_on_the_instance(settings, telemetry_job, instance):
    _, job = telemetry_job
    rec = recorder(settings)
    expected = {"model": [0, 0], "summary": [0, 0]}
    for days_from, sizes in ((-1, [5, 6]), (0, [10, 20, 30, 40]), (1, [99])):
        for i, size in enumerate(sizes):
            for key, budget in (("model", 128), ("summary", 45)):
                write(rec, key=key, size=size, budget=budget, ts_ms=DAY_NOON_MS + days_from * DAY_MS + i)
                if days_from == 0:
                    expected[key][0] += 1
                    expected[key][1] += size
    rec.flush()

    result = job.execute_in_process(partition_key=DAY, instance=instance)
    assert result.success

    growth = result.output_for_node("metadata_growth_daily")
    assert {k: [w, b] for k, w, b in zip(growth["key"], growth["writes"], growth["bytes"])} == expected
    headroom = result.output_for_node("budget_headroom").set_index("key")
    assert headroom.loc["model", "max_bytes"] == 40 and headroom.loc["summary", "budget_bytes"] == 45
    assert headroom.loc["model", "level"] == "ok" and headroom.loc["summary", "level"] == "warn"

    # The instance holds both materializations for that day, with the chart in the metadata.
    records = {
        key: instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[DAY]), limit=1
        ).records
        for key in (GROWTH_ASSET, HEADROOM_ASSET)
    }
    assert all(len(r) == 1 for r in records.values())
    metadata = records[GROWTH_ASSET][0].asset_materialization.metadata
    assert metadata["writes"].value == 8 and metadata["bytes"].value == 200
    chart = DATA_URI.search(metadata["growth_chart"].value)
    assert chart is not None
    width, height, variance = png_facts(base64.b64decode(chart.group(1)))
    assert (width, height) == (1000, 500) and variance > 1e-3


def test_headroom_check_warns_then_fails_before_the_first_rejection(env, tmp_path, instance):
    """Values of one key grow toward its budget through the real write boundary; after each
    round the day's headroom is materialized. The check must warn, then fail, before the
    boundary rejects the first value."""
    budget = 100
    tight = dataclasses.replace(
        env, boundary=FrameMetadataBoundary(budgets=Budgets(per_key_max_bytes={"model": budget}))
    )
    defs = build_definitions(load_catalog(default_layers(env.settings, tmp_path)), tight)
    job = defs.resolve_job_def(TELEMETRY_JOB)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    site = WriteSite("docs_writer_thread_v1", "1.0.0", "thread-1", "turn-1", "node-1", "frame-1")

    verdicts: list[tuple[int, str, bool]] = []  # (round, severity, passed)
    first_rejection = None
    for round_no, size in enumerate([50, 70, 84, 90, 97, 100, 112]):
        rejected = 0
        for _ in range(5):
            try:
                accepted = tight.boundary.validate({"agent": {"model": "m" * size}})
            except MetadataError as exc:
                assert exc.code == METADATA_BUDGET_EXCEEDED
                record_rejection(tight, site, exc)
                rejected += 1
            else:
                record_frame_metadata(tight, site, accepted)
        assert flush_telemetry(tight) == 5
        if rejected and first_rejection is None:
            first_rejection = round_no
        result = job.execute_in_process(
            partition_key=today, instance=instance, asset_selection=[HEADROOM_ASSET]
        )
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.check_name == HEADROOM_CHECK and evaluation.partition == today
        verdicts.append((round_no, evaluation.severity.value, evaluation.passed))

    first_warn = next(r for r, sev, ok in verdicts if not ok and sev == AssetCheckSeverity.WARN.value)
    first_error = next(r for r, sev, ok in verdicts if not ok and sev == AssetCheckSeverity.ERROR.value)
    assert verdicts[0][2] is True  # 50% of the budget: passes
    assert first_rejection is not None
    assert first_warn < first_error <= first_rejection
    assert first_warn < first_rejection
    # The check's verdicts are on the instance, per day partition.
    history = instance.event_log_storage.get_asset_check_execution_history(
        check_key=next(iter(defs.resolve_asset_graph().get(HEADROOM_ASSET).check_keys)), limit=20
    )
    assert len(history) == len(verdicts)


def test_the_hourly_schedule_runs_today_and_closes_yesterday_after_midnight(telemetry_job, instance):
    defs, job = telemetry_job
    hourly = defs.resolve_schedule_def(TELEMETRY_SCHEDULE)
    assert hourly.job_name == job.name and hourly.default_status == DefaultScheduleStatus.RUNNING

    def requested(at: dt.datetime) -> list[tuple[str, str]]:
        with build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
        ) as context:
            result = hourly.evaluate_tick(context)
        return [(r.partition_key, r.run_key) for r in result.run_requests]

    assert requested(dt.datetime(2026, 3, 10, 14, 5, tzinfo=dt.UTC)) == [
        ("2026-03-10", "2026-03-10@2026-03-10T14")
    ]
    assert [p for p, _ in requested(dt.datetime(2026, 3, 11, 0, 5, tzinfo=dt.UTC))] == [
        "2026-03-10",
        "2026-03-11",
    ]


def test_digest_keys_at_their_budget_pass_the_check(env, telemetry_job, instance):
    """A normal run writes 71-byte digests against a 71-byte budget (p95 ratio 1.0): fixed by
    schema, they cannot grow, so the check passes while a growing key still warns."""
    from wf_pipeline.metadata.canonical import DIGEST_PREFIX

    _, job = telemetry_job
    today = dt.datetime.now(dt.UTC).date().isoformat()
    site = WriteSite("docs_writer_thread_v1", "1.0.0", "thread-1", "turn-1", "node-1", "frame-1")
    for i in range(5):
        digest = DIGEST_PREFIX + f"{i:064x}"
        accepted = env.boundary.validate(
            {
                "prompt_context": {"prompt_digest": digest},
                "context": {"context_digest": digest},
                "agent": {"model": "gpt"},
            }
        )
        record_frame_metadata(env, site, accepted)
    assert flush_telemetry(env) == 15
    result = job.execute_in_process(partition_key=today, instance=instance, asset_selection=[HEADROOM_ASSET])
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.description
    frame = result.output_for_node("budget_headroom")
    levels = dict(zip(frame["key"], frame["level"], strict=True))
    assert levels["prompt_digest"] == levels["context_digest"] == "fixed"
    assert set(frame.loc[frame["key"].str.endswith("_digest"), "p95_ratio"]) == {1.0}


def test_a_day_without_telemetry_materializes_empty_and_passes_the_check(telemetry_job, instance):
    _, job = telemetry_job
    result = job.execute_in_process(partition_key="2026-02-01", instance=instance)
    assert result.success
    assert result.output_for_node("metadata_growth_daily").empty
    assert result.output_for_node("budget_headroom").empty
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.partition == "2026-02-01"


def test_the_code_location_runs_telemetry_without_a_working_provider(
    settings, tmp_path, monkeypatch, instance
):
    """The UI's code location (no CLI env) reads only settings: a provider without its key stops no telemetry run."""
    monkeypatch.setenv("WF_PROVIDER", "no_such_provider")
    rec = recorder(settings)
    write(rec, key="model", size=42, budget=128, ts_ms=DAY_NOON_MS)
    rec.flush()
    defs = build_definitions(load_catalog(default_layers(settings, tmp_path)))
    result = defs.resolve_job_def(TELEMETRY_JOB).execute_in_process(partition_key=DAY, instance=instance)
    assert result.success
    growth = result.output_for_node("metadata_growth_daily")
    assert list(growth["key"]) == ["model"] and list(growth["bytes"]) == [42]
