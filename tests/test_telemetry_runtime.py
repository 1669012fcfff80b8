"""Telemetry rows of real runs: counts match the records, rejections are rows, no payload reaches a file."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.errors import METADATA_BUDGET_EXCEEDED
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.budgets import Budgets
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import run_workflow
from wf_pipeline.telemetry import ARTIFACT_WRITES, METADATA_WRITES, TelemetryStore, run_query

WORKFLOW = "docs_writer_thread_v1"


def _table(engine, suffix: str) -> str:
    # The record store prefixes its table names.
    return next(name for name in sa.inspect(engine).get_table_names() if name.endswith(suffix))


def _frames(settings) -> list[tuple[str, dict[str, str]]]:
    engine = sa.create_engine(settings.records_url)
    try:
        with engine.connect() as con:
            rows = con.execute(
                sa.text(f"select frame_id, metadata from {_table(engine, 'frames')}")
            ).fetchall()
    finally:
        engine.dispose()
    return [
        (frame_id, json.loads(metadata) if isinstance(metadata, str) else metadata)
        for frame_id, metadata in rows
    ]


def _links(settings) -> list[tuple[str, int]]:
    engine = sa.create_engine(settings.records_url)
    try:
        with engine.connect() as con:
            return [
                tuple(row)
                for row in con.execute(
                    sa.text(f"select role, size from {_table(engine, 'artifact_links')}")
                ).fetchall()
            ]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_run_writes_one_row_per_frame_metadata_key_and_artifact_put(monkeypatch, tmp_path):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "repo")
    summary = run_workflow(settings, WORKFLOW, tree)
    assert summary.dagster_run_ids

    frames = _frames(settings)
    assert frames, "the run wrote frames"
    writes = sum(len(metadata) for _, metadata in frames)
    _, rows = run_query(settings, "select count(*) from metadata_writes")
    assert rows == [(writes,)]
    # Grouped by key, the telemetry matches the records.
    by_key = Counter(key for _, metadata in frames for key in metadata)
    _, rows = run_query(settings, "select key, count(*) from metadata_writes group by key order by key")
    assert rows == sorted(by_key.items())
    # Per frame, and every byte count is the value's UTF-8 size.
    sizes = {
        (frame_id, key): len(value.encode())
        for frame_id, metadata in frames
        for key, value in metadata.items()
    }
    _, rows = run_query(
        settings,
        "select frame_id, key, bytes, budget_bytes, outcome, run_id, workflow_id from metadata_writes",
    )
    assert {(frame_id, key): size for frame_id, key, size, *_ in rows} == sizes
    assert {row[4] for row in rows} == {"accepted"}
    assert all(row[3] and row[3] >= row[2] for row in rows)
    assert {row[5] for row in rows} <= set(summary.dagster_run_ids)
    assert {row[6] for row in rows} == {WORKFLOW}
    # One artifact row per link a turn attempt put (inputs re-read earlier outputs).
    classes = {
        "system_prompt": "prompt_render",
        "prompt_template": "prompt_render",
        "rendered_prompt": "prompt_render",
        "context": "context_payload",
        "output": "output",
    }
    expected = Counter((classes[role], size) for role, size in _links(settings) if role in classes)
    _, rows = run_query(settings, "select key, bytes from artifact_writes")
    assert Counter(rows) == expected
    # Flushed per step, never per row: far fewer files than rows.
    store = TelemetryStore(settings.telemetry_url)
    files = [
        path for path in store.files(METADATA_WRITES) + store.files(ARTIFACT_WRITES) if "_seed" not in path
    ]
    assert 0 < len(files) < (writes + sum(expected.values())) / 2

    # No payload: neither prompt text, context text nor output text is in any telemetry file.
    sources = sorted(path for path in tree.rglob("*.py") if path.is_file())
    assert sources
    snippets = [line.strip() for line in sources[0].read_text().splitlines() if len(line.strip()) > 20][:3]
    outputs = [path for path in (settings.out_dir).rglob("*") if path.is_file()]
    assert outputs
    snippets += [line.strip() for line in outputs[0].read_text().splitlines() if len(line.strip()) > 20][:3]
    assert snippets
    for path in store.fs.glob(f"{store.root}/**/*.parquet"):
        data = store.fs.cat_file(path)
        # Files are compressed: check the decoded cells as well as the raw bytes.
        table = pq.read_table(path)
        cells = "\n".join(str(value) for column in table.columns for value in column.to_pylist())
        for snippet in snippets:
            assert snippet.encode() not in data
            assert snippet not in cells


def test_telemetry_off_writes_nothing_and_runs_the_same(monkeypatch, tmp_path):
    monkeypatch.setenv("WF_TELEMETRY", "0")
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    settings = settings.model_copy(update={"telemetry": False})
    tree = copy_tree(SAMPLE_REPO, tmp_path / "repo")
    summary = run_workflow(settings, WORKFLOW, tree)
    assert summary.dagster_run_ids
    assert not (settings.home / "telemetry").exists()


def test_a_rejected_frame_write_emits_a_rejected_row(monkeypatch, tmp_path):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "repo")
    real_open = RuntimeEnv.open.__func__

    def tight_open(cls, *args, **kwargs):
        env = real_open(cls, *args, **kwargs)
        # model's budget is smaller than the offline provider's model name.
        budgets = Budgets(per_key_max_bytes={"model": 3})
        object.__setattr__(env, "boundary", FrameMetadataBoundary(FRAME_KEY_REGISTRY, budgets))
        return env

    monkeypatch.setattr(RuntimeEnv, "open", classmethod(tight_open))
    run_workflow(settings, WORKFLOW, tree)
    _, rows = run_query(
        settings,
        "select key, outcome, error_code, bytes, budget_bytes, domain from metadata_writes where outcome = 'rejected'",
    )
    assert rows
    assert {row[:3] for row in rows} == {("model", "rejected", METADATA_BUDGET_EXCEEDED)}
    assert all(row[3] > row[4] == 3 for row in rows)
    # Nothing of a rejected frame is written: no accepted row, no frame record.
    _, accepted = run_query(settings, "select count(*) from metadata_writes where outcome = 'accepted'")
    assert accepted == [(0,)] and _frames(settings) == []
