"""Telemetry store: schema checks, hive layout, views on an empty home, fsspec URLs, queries, compaction."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import pyarrow
import pyarrow.parquet as pq
import pytest

from wf_pipeline.errors import TELEMETRY_QUERY_INVALID, TELEMETRY_SCHEMA_INVALID, TelemetryError
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import (
    ARROW_SCHEMA,
    METADATA_WRITES,
    VIEWS,
    VIEWS_SQL,
    DisabledTelemetryRecorder,
    TelemetryRecorder,
    TelemetryStore,
    connect,
    connect_store,
    open_recorder,
    run_query,
)

DAY_MS = 86_400_000
# 2026-01-01T00:00:00Z and the two days after it.
JAN1 = 1_767_225_600_000


def _row(
    recorder: TelemetryRecorder, *, ts_ms: int, workflow_id: str = "docs_writer", key: str = "k", **extra
):
    values = {
        "workflow_id": workflow_id,
        "profile_version": "v1",
        "thread_id": "thread-1",
        "turn_id": "draft",
        "node_id": "node-1",
        "frame_id": "frame-1",
        "domain": "docs",
        "key": key,
        "mutability_class": "annotation",
        "bytes": 12,
        "budget_bytes": 64,
        "outcome": "accepted",
        "ts_ms": ts_ms,
    }
    values.update(extra)
    recorder.metadata_write(**values)


def _settings(tmp_path) -> Settings:
    return Settings.from_env({"WF_HOME": str(tmp_path / "home")})


def test_views_work_on_an_empty_home(tmp_path):
    settings = _settings(tmp_path)
    for view in ("metadata_writes", "artifact_writes", "key_growth", "frame_growth", "budget_headroom"):
        columns, rows = run_query(settings, f"select * from {view}")
        assert rows == []
        assert columns == [name for name, _ in VIEWS[view]]
    assert [name for name, _ in VIEWS["metadata_writes"]][: len(ARROW_SCHEMA.names)] == ARROW_SCHEMA.names
    # The seed files sit two levels deep like every other file, so hive partitioning holds.
    seeds = TelemetryStore(settings.telemetry_url).files(METADATA_WRITES)
    assert len(seeds) == 1 and "/date=1970-01-01/workflow_id=_seed/" in seeds[0]


def test_rows_land_in_hive_partitions_by_utc_day_and_quoted_workflow(tmp_path):
    settings = _settings(tmp_path)
    store = TelemetryStore(settings.telemetry_url)
    recorder = TelemetryRecorder(store)
    _row(recorder, ts_ms=JAN1 + 5, workflow_id="docs/writer=x")
    _row(recorder, ts_ms=JAN1 + DAY_MS - 1, workflow_id="docs/writer=x")
    _row(recorder, ts_ms=JAN1 + DAY_MS, workflow_id="docs/writer=x")
    _row(recorder, ts_ms=JAN1 + DAY_MS, workflow_id="other")
    assert recorder.pending == 4
    assert recorder.flush() == 4
    assert recorder.pending == 0 and recorder.flush() == 0
    files = [path for path in store.files(METADATA_WRITES) if "_seed" not in path]
    relative = sorted(path[len(store.root) + 1 :].rsplit("/", 1)[0] for path in files)
    assert relative == [
        "metadata_writes/date=2026-01-01/workflow_id=docs%2Fwriter%3Dx",
        "metadata_writes/date=2026-01-02/workflow_id=docs%2Fwriter%3Dx",
        "metadata_writes/date=2026-01-02/workflow_id=other",
    ]
    # Each file holds the whole row, the workflow id included.
    first = pq.read_table(sorted(files)[0])
    assert first.schema.names == ARROW_SCHEMA.names
    # DuckDB decodes the hive value back to the id, and the day column follows the folder.
    columns, rows = run_query(
        settings, "select workflow_id, day, count(*) from metadata_writes group by all order by all"
    )
    assert rows == [
        ("docs/writer=x", dt.date(2026, 1, 1), 2),
        ("docs/writer=x", dt.date(2026, 1, 2), 1),
        ("other", dt.date(2026, 1, 2), 1),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"outcome": "written"},
        {"bytes": -1},
        {"workflow_id": ""},
        {"ts_ms": -5},
    ],
)
def test_a_malformed_batch_is_rejected_with_a_typed_error_and_nothing_written(tmp_path, bad):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    recorder = TelemetryRecorder(store)
    _row(recorder, ts_ms=JAN1)
    _row(recorder, **{"ts_ms": JAN1 + 1, **bad})
    with pytest.raises(TelemetryError) as caught:
        recorder.flush()
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    assert str(caught.value).startswith("TELEMETRY_SCHEMA_INVALID: metadata_writes batch of 2 rows")
    assert not (tmp_path / "telemetry").exists()


def test_a_batch_with_wrong_columns_or_types_is_rejected(tmp_path):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    good = pyarrow.table(
        {name: pyarrow.nulls(1, field.type) for name, field in zip(ARROW_SCHEMA.names, ARROW_SCHEMA)}
    )
    with pytest.raises(TelemetryError) as caught:
        store.write(METADATA_WRITES, good.drop_columns(["run_id"]))
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    wrong_type = good.set_column(0, "ts_ms", pyarrow.array(["1"], pyarrow.string()))
    with pytest.raises(TelemetryError) as caught:
        store.write(METADATA_WRITES, wrong_type)
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    # A null in a required column fails the pandera model.
    with pytest.raises(TelemetryError) as caught:
        store.write(METADATA_WRITES, good)
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    with pytest.raises(TelemetryError) as caught:
        store.write("nope", good)
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
    assert not (tmp_path / "telemetry").exists()


def test_bad_sql_gives_telemetry_query_invalid_with_duckdbs_message(tmp_path):
    settings = _settings(tmp_path)
    with pytest.raises(TelemetryError) as caught:
        run_query(settings, "selec 1")
    assert caught.value.code == TELEMETRY_QUERY_INVALID
    assert "syntax error" in str(caught.value)
    with pytest.raises(TelemetryError) as caught:
        run_query(settings, "select nope from metadata_writes")
    assert caught.value.code == TELEMETRY_QUERY_INVALID
    assert "nope" in str(caught.value)


def test_an_fsspec_memory_url_holds_the_store_and_duckdb_reads_it():
    url = f"memory://telemetry-{uuid.uuid4().hex}"
    store = TelemetryStore(url)
    assert not store.local
    recorder = TelemetryRecorder(store)
    for index in range(3):
        _row(recorder, ts_ms=JAN1 + index, key=f"k{index % 2}")
    assert recorder.flush() == 3
    con = connect_store(store, archive="memory://archive")
    try:
        assert con.execute(
            "select key, count(*) from metadata_writes group by key order by key"
        ).fetchall() == [
            ("k0", 2),
            ("k1", 1),
        ]
    finally:
        con.close()
    store.fs.rm(store.root, recursive=True)


def test_disabled_recorder_writes_nothing(tmp_path):
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home"), "WF_TELEMETRY": "0"})
    recorder = open_recorder(settings)
    assert isinstance(recorder, DisabledTelemetryRecorder) and not recorder.enabled
    recorder.metadata_write(workflow_id="w", key="k")
    assert recorder.flush() == 0
    assert not (tmp_path / "home" / "telemetry").exists()
    assert isinstance(open_recorder(_settings(tmp_path)), TelemetryRecorder)


def test_views_sql_runs_from_a_plain_duckdb_connection(tmp_path):
    import duckdb

    settings = _settings(tmp_path)
    recorder = open_recorder(settings)
    _row(recorder, ts_ms=JAN1)
    recorder.flush()
    # The product's views seed the archive ($WF_HOME/archive) the first time they open;
    # the telemetry writer never touches it.
    product = connect(settings)
    assert product.execute("select count(*) from metadata_writes").fetchone() == (1,)
    product.close()
    con = duckdb.connect()
    con.execute("SET VARIABLE wf_telemetry = ?", [settings.telemetry_url])
    con.execute("SET VARIABLE wf_archive = ?", [str(settings.home / "archive")])
    con.execute(VIEWS_SQL.read_text())
    assert con.execute("select writes, bytes from key_growth").fetchall() == [(1, 12)]
    assert con.execute("select count(*) from archived_threads").fetchone() == (0,)
    con.close()


def test_recorder_is_thread_safe(tmp_path):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    recorder = TelemetryRecorder(store)
    flushed = []

    def work(worker: int) -> None:
        for index in range(500):
            _row(recorder, ts_ms=JAN1 + index, key=f"k{worker}")
            if index % 100 == 0:
                flushed.append(recorder.flush())

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flushed.append(recorder.flush())
    assert sum(flushed) == 2000
    assert store.read_table(METADATA_WRITES).num_rows == 2000


def _write_days(store: TelemetryStore, days: int, files_per_day: int, rows_per_file: int) -> int:
    recorder = TelemetryRecorder(store)
    total = 0
    for day in range(days):
        for _ in range(files_per_day):
            for index in range(rows_per_file):
                _row(recorder, ts_ms=JAN1 + day * DAY_MS + index)
                total += 1
            recorder.flush()
    return total


def test_compaction_merges_closed_days_only(tmp_path):
    settings = _settings(tmp_path)
    store = TelemetryStore(settings.telemetry_url)
    total = _write_days(store, days=3, files_per_day=4, rows_per_file=5)
    before = run_query(
        settings, "select day, count(*), sum(ts_ms) from metadata_writes group by day order by day"
    )
    result = store.compact("2026-01-03")
    assert (result.partitions, result.files_merged, result.rows) == (2, 8, 40)
    after = run_query(
        settings, "select day, count(*), sum(ts_ms) from metadata_writes group by day order by day"
    )
    assert after == before and sum(row[1] for row in after[1]) == total
    per_day = {}
    for path in store.files(METADATA_WRITES):
        per_day.setdefault(path.split("/date=")[1].split("/")[0], []).append(path)
    assert {day: len(paths) for day, paths in per_day.items()} == {
        "1970-01-01": 1,
        "2026-01-01": 1,
        "2026-01-02": 1,
        "2026-01-03": 4,
    }
    # Nothing left to merge: a second pass changes nothing.
    assert store.compact(dt.date(2026, 1, 3)).partitions == 0
    with pytest.raises(TelemetryError) as caught:
        store.compact("yesterday")
    assert caught.value.code == "TELEMETRY_BAD_ARGUMENTS"


def test_compaction_finishes_a_journal_left_by_a_crash(tmp_path):
    store = TelemetryStore(str(tmp_path / "telemetry"))
    _write_days(store, days=1, files_per_day=3, rows_per_file=2)
    folder = f"{store.root}/metadata_writes/date=2026-01-01/workflow_id=docs_writer"
    sources = sorted(store.fs.glob(f"{folder}/*.parquet"))
    # A crash after the merged file was renamed in but before the sources were deleted.
    merged = pyarrow.concat_tables([pq.read_table(path) for path in sources])
    pq.write_table(merged, f"{folder}/part-1-merged-c.parquet")
    journal = {
        "merged": "part-1-merged-c.parquet",
        "temp": ".x.tmp",
        "sources": [path.rsplit("/", 1)[-1] for path in sources],
    }
    store.fs.pipe_file(f"{folder}/_compaction.json", json.dumps(journal).encode())
    store.compact("2026-01-01")  # the day itself is open: only the journal is finished
    assert sorted(store.fs.glob(f"{folder}/*")) == [f"{folder}/part-1-merged-c.parquet"]
    assert store.read_table(METADATA_WRITES).num_rows == 6


def test_a_query_during_compaction_sees_each_row_exactly_once(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    store = TelemetryStore(settings.telemetry_url)
    total = _write_days(store, days=6, files_per_day=8, rows_per_file=50)
    # Slow deletes (a busy disk, an object store) widen the moment between the merged file
    # appearing and its sources going; without the lock a query there counts rows twice.
    real_rm = store.fs.rm

    def slow_rm(path, *args, **kwargs):
        time.sleep(0.005)
        return real_rm(path, *args, **kwargs)

    monkeypatch.setattr(store.fs, "rm", slow_rm)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            try:
                _, rows = run_query(
                    settings, "select count(*), count(distinct (ts_ms, day)) from metadata_writes"
                )
                seen.append(rows[0][0])
            except BaseException as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

    reader = threading.Thread(target=query_loop)
    reader.start()
    try:
        for day in range(2, 8):
            store.compact(f"2026-01-0{day}")
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen and set(seen) == {total}
    assert len(store.files(METADATA_WRITES)) == 1 + 6


def test_a_memory_url_in_settings_serves_queries(tmp_path):
    url = f"memory://wf-telemetry-{uuid.uuid4().hex}"
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home"), "WF_TELEMETRY_URL": url})
    assert settings.telemetry_url == url
    recorder = open_recorder(settings)
    _row(recorder, ts_ms=JAN1, key="k1")
    _row(recorder, ts_ms=JAN1 + DAY_MS, key="k2")
    assert recorder.flush(run_id="run-1") == 2
    columns, rows = run_query(settings, "select key, day, run_id from metadata_writes order by key")
    assert rows == [("k1", dt.date(2026, 1, 1), "run-1"), ("k2", dt.date(2026, 1, 2), "run-1")]
    assert not (tmp_path / "home" / "telemetry").exists()
    store = TelemetryStore(url)
    store.fs.rm(store.root, recursive=True)


def test_a_failing_store_is_logged_once_and_the_rows_dropped(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the telemetry folder should be")
    recorder = TelemetryRecorder(TelemetryStore(str(blocker)))
    for _ in range(2):
        _row(recorder, ts_ms=JAN1)
        with caplog.at_level("WARNING", logger="wf_pipeline.telemetry.recorder"):
            assert recorder.flush_safely() == 0
        assert recorder.pending == 0
    warnings = [r.getMessage() for r in caplog.records if "telemetry flush dropped" in r.getMessage()]
    assert len(warnings) == 1 and "TELEMETRY_WRITE_FAILED" in warnings[0]


def test_synth_writes_realistic_rows_through_the_writer(tmp_path):
    from wf_pipeline.service import synth_telemetry

    settings = _settings(tmp_path)
    seen = []
    result = synth_telemetry(
        settings,
        50_000,
        5,
        end_day=dt.date(2026, 1, 5),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert result["rows"] == 50_000 and result["files"] == 15 and seen[-1] == (50_000, 50_000)
    _, rows = run_query(
        settings,
        "select count(*), count(distinct workflow_id), min(day), max(day), count(distinct key), "
        "count(*) filter (where outcome = 'rejected'), count(*) filter (where bytes > budget_bytes) "
        "from metadata_writes",
    )
    total, workflows, first, last, keys, rejected, over = rows[0]
    assert (total, workflows, first, last) == (50_000, 3, dt.date(2026, 1, 1), dt.date(2026, 1, 5))
    assert keys > 20
    # Rejections are exactly the over-budget sizes, and rare.
    assert 0 < rejected == over < total * 0.05
    # Some keys grow: the top key's daily bytes rise over the days.
    _, growth = run_query(
        settings,
        "with d as (select key, day, sum(bytes) b from key_growth group by all) "
        "select key, regr_slope(b, epoch(day) / 86400) s from d group by key order by s desc limit 1",
    )
    assert growth[0][1] > 0


def test_a_url_no_filesystem_serves_is_a_typed_error():
    with pytest.raises(TelemetryError) as caught:
        TelemetryStore("nosuchproto://bucket/telemetry")
    assert caught.value.code == "TELEMETRY_BAD_URL"


QUERY_LOOP = """
import sys, time
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import run_query
settings = Settings.from_env({"WF_HOME": sys.argv[1]})
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    print(run_query(settings, "select count(*) from metadata_writes")[1][0][0], flush=True)
"""


def test_a_query_in_another_process_during_compaction_sees_each_row_once(tmp_path, monkeypatch):
    import subprocess
    import sys

    settings = _settings(tmp_path)
    store = TelemetryStore(settings.telemetry_url)
    total = _write_days(store, days=6, files_per_day=8, rows_per_file=50)
    real_rm = store.fs.rm

    def slow_rm(path, *args, **kwargs):
        time.sleep(0.02)
        return real_rm(path, *args, **kwargs)

    monkeypatch.setattr(store.fs, "rm", slow_rm)
    reader = subprocess.Popen(
        [sys.executable, "-c", QUERY_LOOP, str(settings.home), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "ready"
        first = reader.stdout.readline().strip()  # the reader is querying
        for day in range(2, 8):
            store.compact(f"2026-01-0{day}")
        second = reader.stdout.readline().strip()
    finally:
        reader.kill()
        rest, errors = reader.communicate()
    counts = {int(line) for line in [first, second, *rest.split()] if line.strip()}
    assert counts == {total}, errors[-2000:]
    assert len(store.files(METADATA_WRITES)) == 1 + 6


def test_files_written_before_the_branch_column_stay_queryable(tmp_path):
    settings = _settings(tmp_path)
    store = TelemetryStore(settings.telemetry_url)
    recorder = TelemetryRecorder(store)
    _row(recorder, ts_ms=JAN1 + 1, key="new", branch="taken")
    _row(recorder, ts_ms=JAN1 + 2, key="new", branch="not_taken")
    _row(recorder, ts_ms=JAN1 + 3, key="plain")
    assert recorder.flush() == 3
    # A file of the same partition in the shape written before the column existed.
    new_file = next(path for path in store.files(METADATA_WRITES) if "2026-01-01" in path)
    old = pq.read_table(new_file).drop_columns(["branch"]).slice(0, 1)
    old = old.set_column(old.schema.get_field_index("key"), "key", pyarrow.array(["old"]))
    assert "branch" not in old.schema.names
    old_path = new_file.rsplit("/", 1)[0] + "/part-0-old.parquet"
    pq.write_table(old, old_path)
    # The seed of an older home lacks the column too: it is the first file DuckDB meets.
    seed = next(path for path in store.files(METADATA_WRITES) if "_seed" in path)
    pq.write_table(pq.read_table(seed).drop_columns(["branch"]), seed)

    expected = [("new", "not_taken"), ("new", "taken"), ("old", None), ("plain", None)]
    _, rows = run_query(settings, "select key, branch from metadata_writes order by key, branch")
    assert rows == expected
    _, counts = run_query(settings, "select key, writes from key_growth order by key")
    assert counts == [("new", 2), ("old", 1), ("plain", 1)]
    # The store's own reader fills the column with nulls, and compaction merges both shapes.
    table = store.read_table(METADATA_WRITES)
    assert sorted(zip(table["key"].to_pylist(), table["branch"].to_pylist(), strict=True), key=str) == sorted(
        expected, key=str
    )
    assert store.compact("2026-01-02").rows == 4
    _, after = run_query(settings, "select key, branch from metadata_writes order by key, branch")
    assert after == expected


def test_a_branch_value_outside_taken_and_not_taken_is_rejected(tmp_path):
    recorder = TelemetryRecorder(TelemetryStore(_settings(tmp_path).telemetry_url))
    _row(recorder, ts_ms=JAN1, branch="maybe")
    with pytest.raises(TelemetryError) as caught:
        recorder.flush()
    assert caught.value.code == TELEMETRY_SCHEMA_INVALID
