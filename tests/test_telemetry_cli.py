"""``wf telemetry`` as a user runs it: synth, query (--json, --csv), views, bad SQL, usage errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT

from wf_pipeline.errors import TELEMETRY_QUERY_INVALID
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import METADATA_WRITES, TABLES, TelemetryStore

WF = REPO_ROOT / ".venv" / "bin" / "wf"

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")


def wf(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env["WF_HOME"] = str(home)
    return subprocess.run(
        [str(WF), *args], env=env, capture_output=True, text=True, timeout=300, cwd=home.parent
    )


@pytest.mark.slow
def test_synth_then_query_as_json_and_csv_and_list_views(tmp_path):
    home = tmp_path / "home"
    synth = wf(home, "telemetry", "synth", "--rows", "30000", "--days", "3", "--workflow", "wf_a", "--json")
    assert synth.returncode == 0, synth.stderr
    report = json.loads(synth.stdout)
    assert report["rows"] == 30000 and report["days"] == 3 and report["files"] == 3
    assert report["rows_per_s"] > 0

    # The rows are really in the store, one file per day, with realistic rejections.
    store = TelemetryStore(Settings.from_env({"WF_HOME": str(home)}).telemetry_url)
    table = store.read_table(METADATA_WRITES)
    assert table.num_rows == 30000
    assert len([path for path in store.files(METADATA_WRITES) if "_seed" not in path]) == 3
    outcomes = set(table.column("outcome").to_pylist())
    assert outcomes == {"accepted", "rejected"}

    query = "select day, count(*) as n from metadata_writes group by day order by day"
    as_json = wf(home, "telemetry", "query", query, "--json")
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["columns"] == ["day", "n"]
    assert [row[1] for row in result["rows"]] == [10000, 10000, 10000]
    assert len({row[0] for row in result["rows"]}) == 3

    as_csv = wf(home, "telemetry", "query", query, "--csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert lines[0] == ["day", "n"] and [line[1] for line in lines[1:]] == ["10000"] * 3

    top = wf(
        home,
        "telemetry",
        "query",
        "select key, sum(bytes) from key_growth group by key order by 2 desc limit 20",
    )
    assert top.returncode == 0 and "20 rows" in top.stdout

    views = wf(home, "telemetry", "views", "--json")
    assert views.returncode == 0, views.stderr
    names = {view["name"]: [c["name"] for c in view["columns"]] for view in json.loads(views.stdout)["views"]}
    assert {"metadata_writes", "artifact_writes", "key_growth", "frame_growth", "budget_headroom"} <= set(
        names
    )
    assert {"p50_bytes", "p95_bytes", "max_bytes", "budget_bytes"} <= set(names["budget_headroom"])


def test_bad_sql_exits_1_with_the_code_and_usage_errors_exit_2(tmp_path):
    home = tmp_path / "home"
    bad = wf(home, "telemetry", "query", "select nope from metadata_writes")
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{TELEMETRY_QUERY_INVALID}: ")
    assert "nope" in bad.stderr
    bad_json = wf(home, "telemetry", "query", "selec 1", "--json")
    assert bad_json.returncode == 1
    assert json.loads(bad_json.stdout)["error"]["code"] == TELEMETRY_QUERY_INVALID
    both = wf(home, "telemetry", "query", "select 1", "--json", "--csv")
    assert both.returncode == 2 and "exclude each other" in both.stderr
    zero = wf(home, "telemetry", "synth", "--rows", "0", "--days", "1")
    assert zero.returncode == 2
    # Nothing was written by any of them: only the seed files (made by the queries) exist.
    files = sorted(path.name for path in (home / "telemetry").rglob("*.parquet"))
    assert files == ["part-0-seed.parquet"] * len(TABLES)


def strict_json(text: str):
    # json.loads accepts Infinity and NaN by default; valid JSON (RFC 8259) has neither.
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


ODD_VALUES = (
    "select 1/0 as inf, 'nan'::double as nan, '\\xAA\\xBB'::blob as blob, interval 1 day as one_day, "
    "interval '2 hours 30 minutes' as span, date '2026-01-02' as d, time '10:11:12' as t, "
    "timestamp '2026-01-02 03:04:05' as ts, 12.50::decimal(5,2) as dec, "
    "'3039e528-ac73-4016-8555-f871ccd15864'::uuid as id, [1, 2] as list, {'x': 1} as struct"
)
ODD_ENCODED = [
    None,
    None,
    "qrs=",
    "P1D",
    "PT2H30M",
    "2026-01-02",
    "10:11:12",
    "2026-01-02T03:04:05",
    "12.50",
    "3039e528-ac73-4016-8555-f871ccd15864",
    [1, 2],
    {"x": 1},
]


def test_json_output_is_valid_json_for_every_kind_of_value(tmp_path):
    home = tmp_path / "home"
    result = wf(home, "telemetry", "query", ODD_VALUES, "--json")
    assert result.returncode == 0, result.stderr
    payload = strict_json(result.stdout)
    assert payload["columns"][:3] == ["inf", "nan", "blob"]
    assert payload["rows"] == [ODD_ENCODED]


def test_csv_output_uses_the_same_encoding(tmp_path):
    home = tmp_path / "home"
    result = wf(home, "telemetry", "query", ODD_VALUES, "--csv")
    assert result.returncode == 0, result.stderr
    header, row = list(csv.reader(io.StringIO(result.stdout)))
    assert header[0] == "inf" and len(row) == len(ODD_ENCODED)
    assert row[:5] == ["", "", "qrs=", "P1D", "PT2H30M"]
    assert json.loads(row[-2]) == [1, 2] and json.loads(row[-1]) == {"x": 1}


def test_a_table_shows_at_most_1000_rows_and_says_how_many_were_left_out(tmp_path):
    home = tmp_path / "home"
    table = wf(home, "telemetry", "query", "select range as n from range(1005)")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "n" and lines[1000].strip() == "999"
    assert lines[-1] == "1005 rows, first 1000 shown, 5 left out (--json or --csv give all)"
    everything = wf(home, "telemetry", "query", "select range as n from range(1005)", "--json")
    assert [row[0] for row in strict_json(everything.stdout)["rows"]] == list(range(1005))


def test_writing_sql_is_refused_by_the_command_with_exit_1(tmp_path):
    home = tmp_path / "home"
    target = tmp_path / "x.csv"
    copy = wf(home, "telemetry", "query", f"COPY (select 1 a) TO '{target}'")
    assert copy.returncode == 1 and copy.stderr.startswith(f"{TELEMETRY_QUERY_INVALID}: ")
    assert not target.exists()
    passwd = wf(home, "telemetry", "query", "select * from read_csv('/etc/passwd', sep = ':')", "--json")
    assert passwd.returncode == 1
    assert strict_json(passwd.stdout)["error"]["code"] == TELEMETRY_QUERY_INVALID


def test_a_per_process_telemetry_url_is_warned_about_on_stderr(tmp_path):
    home = tmp_path / "home"
    env_url = {"WF_TELEMETRY_URL": "memory://tele"}
    result = wf_env(
        home, env_url, "telemetry", "query", "select count(*) as n from metadata_writes", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert strict_json(result.stdout)["rows"] == [[0]]  # stdout stays clean JSON
    assert result.stderr.startswith(
        "CONFIG_STORE_NOT_SHARED: the telemetry store (WF_TELEMETRY_URL=memory://tele)"
    )
    quiet = wf(home, "telemetry", "query", "select 1 as one")
    assert quiet.returncode == 0 and quiet.stderr == ""


def wf_env(home: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(extra, WF_HOME=str(home))
    return subprocess.run(
        [str(WF), *args], env=env, capture_output=True, text=True, timeout=300, cwd=home.parent
    )


def test_synth_days_must_fit_after_the_epoch_or_exit_2_with_the_figure(tmp_path):
    import datetime as dt

    from wf_pipeline.telemetry.synth import max_synthetic_days

    home = tmp_path / "home"
    limit = max_synthetic_days()
    assert limit == (dt.datetime.now(dt.UTC).date() - dt.date(1970, 1, 1)).days + 1
    huge = wf(home, "telemetry", "synth", "--rows", "10", "--days", "100000")
    assert huge.returncode == 2 and "100000" in huge.stderr and str(limit) in huge.stderr
    assert not (home / "telemetry").exists()
    assert max_synthetic_days(dt.date(1970, 1, 3)) == 3
