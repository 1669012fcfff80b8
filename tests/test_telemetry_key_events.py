"""The ``key_events`` telemetry table: its own columns and partitions, checked before writing,
merged by compaction, read by DuckDB through the shipped view."""

from __future__ import annotations

import datetime as dt

import pyarrow
import pytest

from wf_pipeline.errors import TELEMETRY_SCHEMA_INVALID, TelemetryError
from wf_pipeline.telemetry import TelemetryRecorder, TelemetryStore, connect_store
from wf_pipeline.telemetry.schema import KEY_EVENTS, KEY_EVENTS_SCHEMA

DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def test_key_events_land_in_day_and_event_partitions_and_duckdb_reads_them(tmp_path):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    recorder = TelemetryRecorder(store)
    for flush in range(3):  # three flushes: three files per partition, for compaction
        recorder.key_event(
            event="create",
            kek_id=f"kek-output-20231114-g{flush + 1}",
            artifact_class="output",
            period_start_ms=T0 - T0 % DAY_MS,
            manager="local",
            state="primary",
            data_keys=0,
            elapsed_ms=2,
            ts_ms=T0 + flush,
        )
        recorder.key_event(event="rewrap", data_keys=100 * flush, elapsed_ms=40, ts_ms=T0 + DAY_MS + flush)
        assert recorder.flush() == 2
    folders = sorted(
        path.rsplit("/", 3)[-3] + "/" + path.rsplit("/", 3)[-2]
        for path in store.files(KEY_EVENTS)
        if "_seed" not in path
    )
    assert folders == ["date=2023-11-14/event=create"] * 3 + ["date=2023-11-15/event=rewrap"] * 3

    compacted = store.compact("2030-01-01")
    assert (compacted.partitions, compacted.files_merged, compacted.rows) == (2, 6, 6)

    con = connect_store(store, str(tmp_path / "archive"))
    try:
        rows = con.execute(
            "select date, event, count(*), sum(data_keys), min(period_start), max(kek_id) "
            "from key_events group by all order by date"
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        (dt.date(2023, 11, 14), "create", 3, 0, dt.date(2023, 11, 14), "kek-output-20231114-g3"),
        (dt.date(2023, 11, 15), "rewrap", 3, 300, None, None),
    ]


def test_a_bad_key_event_is_refused_before_anything_is_written(tmp_path):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    recorder = TelemetryRecorder(store)
    recorder.key_event(event="unwrap", kek_id="kek-x")  # not a lifecycle event
    with pytest.raises(TelemetryError) as caught:
        recorder.flush()
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    assert store.read_table(KEY_EVENTS).num_rows == 0
    # A batch with a column of key material does not fit the table at all.
    extra = KEY_EVENTS_SCHEMA.append(pyarrow.field("wrapped_key", pyarrow.binary()))
    with pytest.raises(TelemetryError) as caught:
        store.write(KEY_EVENTS, extra.empty_table())
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID


def test_kek_a_put_makes_and_kek_a_sweep_destroys_emit_rows(tmp_path, monkeypatch):
    # The runtime's keyring records its own lifecycle: a put into a new lineage makes a KEK
    # (create), a destroy through it (as a shred-mode sweep does) shreds its data keys (destroy).
    from e2e_support import isolated_settings

    from wf_pipeline.runtime.environment import RuntimeEnv
    from wf_pipeline.telemetry.query import run_query

    settings = isolated_settings(monkeypatch, tmp_path / "home")
    with RuntimeEnv.open(settings, workspace_dir=tmp_path) as env:
        ref = env.cas.put(b"a rendered prompt", artifact_class="prompt_render")
        env.cas.put(b"another rendered prompt", artifact_class="prompt_render")
        (kek,) = [k for k in env.records.list_keks() if k.artifact_class == "prompt_render"]
        assert env.records.data_keys_for([ref.artifact_id])[ref.artifact_id].kek_id == kek.kek_id
        assert env.keyring is not None
        env.keyring.destroy(kek.kek_id)
    _, rows = run_query(
        settings,
        "select event, kek_id, artifact_class, state, data_keys, outcome from key_events order by event",
    )
    assert [tuple(row) for row in rows] == [
        ("create", kek.kek_id, "prompt_render", "primary", 0, "ok"),
        ("destroy", kek.kek_id, "prompt_render", "destroyed", 2, "ok"),
    ]
