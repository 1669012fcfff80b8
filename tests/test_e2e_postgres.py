"""The docs writer with its Dagster instance and its records on the real PostgreSQL server."""

from __future__ import annotations

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus
from e2e_support import SAMPLE_REPO, copy_tree
from postgres_support import RECORDS_SCHEMA, fresh_database, postgres_settings

from wf_pipeline.compiler import open_instance
from wf_pipeline.records import open_record_store
from wf_pipeline.service import run_workflow

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
WORKFLOW = "docs_writer_thread_v1"
OUTPUT_TYPES = ["evidence_map", "verification_report", "readme_struct", "readme_final"]


@pytest.fixture
def database():
    with fresh_database() as created:
        yield created


def test_runs_and_records_land_on_postgresql(tmp_path, monkeypatch, database):
    monkeypatch.chdir(tmp_path)
    settings = postgres_settings(monkeypatch, tmp_path / "home", database)
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")

    summary = run_workflow(settings, WORKFLOW, tree)

    assert summary.ok, [(t.path, t.status) for t in summary.threads]
    assert len(summary.threads) == 8
    assert summary.provider_calls == 4 * len(summary.threads)

    # The runs, through the instance API, come from PostgreSQL storage.
    instance = open_instance(settings)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    runs = instance.get_run_records()
    assert {r.dagster_run.run_id for r in runs} == set(summary.dagster_run_ids)
    assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
    assert database.scalar("SELECT count(*) FROM runs") == len(summary.dagster_run_ids)
    # Nothing fell back to the embedded SQLite instance or record store.
    assert not (settings.dagster_home / "history").exists()
    assert not (settings.home / "records.db").exists()

    # Every turn of every thread is one materialization of its partition, carrying the
    # artifact id the record store holds for that turn.
    store = open_record_store(settings.records_url, schema=RECORDS_SCHEMA)
    try:
        threads = store.list_threads(WORKFLOW)
        assert {t.thread_id for t in threads} == {t.thread_id for t in summary.threads}
        assert {t.status for t in threads} == {"completed"}
        for thread in threads:
            turns = store.latest_turns(thread.thread_id)
            assert [turns[t].status for t in sorted(turns)] == ["completed"] * 4
            produced = {turn.turn_seq: turn.output_artifact_id for turn in turns.values()}
            for seq, output_type in enumerate(OUTPUT_TYPES, start=1):
                records = instance.fetch_materializations(
                    AssetRecordsFilter(
                        asset_key=AssetKey([WORKFLOW, output_type]), asset_partitions=[thread.target_key]
                    ),
                    limit=10,
                ).records
                assert len(records) == 1, (thread.target_key, output_type)
                metadata = records[0].asset_materialization.metadata
                assert metadata["artifact_id"].value == produced[seq]
                assert metadata["thread_id"].value == thread.thread_id
                assert records[0].run_id in summary.dagster_run_ids
    finally:
        store.close()

    # The records sit in their own schema of the same server, beside Dagster's tables.
    assert database.scalar(f"SELECT count(*) FROM {RECORDS_SCHEMA}.wf_threads") == len(threads)
    assert database.scalar(
        f"SELECT count(*) FROM {RECORDS_SCHEMA}.wf_turns WHERE status = 'completed'"
    ) == 4 * len(threads)

    # A second run reuses everything recorded on the server: no provider call, no run.
    again = run_workflow(settings, WORKFLOW, tree)
    assert again.provider_calls == 0
    assert again.dagster_run_ids == ()
    assert [t.final_artifact_id for t in again.threads] == [t.final_artifact_id for t in summary.threads]
