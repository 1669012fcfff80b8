"""`wf telemetry report growth|headroom|rejections`: tables over the DuckDB views, `--since`
windows, and PNG charts a person can read (right size, not blank)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import numpy as np
import pytest
from e2e_support import REPO_ROOT, isolated_settings
from telemetry_support import DAY_MS, png_facts, recorder, write

from wf_pipeline.errors import (
    METADATA_BAD_DURATION,
    TELEMETRY_BAD_ARGUMENTS,
    TELEMETRY_CHART_WRITE_FAILED,
    WfError,
)
from wf_pipeline.service.telemetry_reports import REPORT_KINDS, telemetry_report
from wf_pipeline.telemetry.charts import CHART_DPI, CHART_SIZE_IN
from wf_pipeline.telemetry.headroom import LEVELS, headroom_level

# Noon UTC, so "days ago" never straddles midnight.
NOW_MS = int(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp() * 1000)
WIDTH, HEIGHT = int(CHART_SIZE_IN[0] * CHART_DPI), int(CHART_SIZE_IN[1] * CHART_DPI)
WF = REPO_ROOT / ".venv" / "bin" / "wf"


def day_of(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).date().isoformat()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def history(settings):
    """Ten days of writes of two keys (the second one growing toward its budget), with rejections."""
    rec = recorder(settings)
    rows = []
    for days_ago in range(10):
        ts = NOW_MS - days_ago * DAY_MS
        for i in range(4):
            size_a = 10 + i + days_ago
            write(rec, key="model", size=size_a, budget=128, ts_ms=ts + i)
            rows.append(("model", ts, size_a, "accepted"))
            size_b = 40 + 10 * (9 - days_ago) + i
            outcome = "accepted" if size_b <= 120 else "rejected"
            code = None if outcome == "accepted" else "METADATA_BUDGET_EXCEEDED"
            write(rec, key="summary", size=size_b, budget=120, ts_ms=ts + i, outcome=outcome, error_code=code)
            rows.append(("summary", ts, size_b, outcome))
    assert rec.flush() == len(rows)
    return rows


def test_headroom_levels_warn_at_80_and_fail_at_95_percent():
    assert headroom_level(79.9, 100) == "ok"
    assert headroom_level(80, 100) == "warn"
    assert headroom_level(94.9, 100) == "warn"
    assert headroom_level(95, 100) == "error"
    assert headroom_level(130, 100) == "error"
    assert headroom_level(50, None) == headroom_level(50, 0) == headroom_level(None, 100) == "unbudgeted"


def test_growth_sums_accepted_bytes_per_key_and_day_within_the_window(settings, history):
    report = telemetry_report(settings, "growth", since="3d", now_ms=NOW_MS)
    first_day = day_of(NOW_MS - 3 * DAY_MS)
    expected: dict[tuple[str, str], list[int]] = {}
    for key, ts, size, outcome in history:
        if day_of(ts) >= first_day:
            cell = expected.setdefault((day_of(ts), key), [0, 0, 0])
            if outcome == "accepted":
                cell[0] += 1
                cell[1] += size
            else:
                cell[2] += 1
    got = {(r["day"], r["key"]): [r["writes"], r["bytes"], r["rejected"]] for r in report["rows"]}
    assert got == expected
    assert len({r["day"] for r in report["rows"]}) == 4  # the day 3d ago counts whole
    assert report["since_ms"] == NOW_MS - 3 * DAY_MS and report["chart"] is None
    assert report["columns"][:4] == ["day", "source", "domain", "key"]


def test_headroom_gives_p50_p95_max_against_the_budget_and_the_level(settings, history):
    report = telemetry_report(settings, "headroom", since="2d", now_ms=NOW_MS + 1000)
    rows = {r["key"]: r for r in report["rows"]}
    for key, budget in (("model", 128), ("summary", 120)):
        # The window starts 2 days before now_ms: the writes of today and yesterday.
        sizes = [s for k, ts, s, _ in history if k == key and ts >= NOW_MS + 1000 - 2 * DAY_MS]
        # DuckDB's quantile_cont interpolates linearly, as numpy's default percentile does.
        assert rows[key]["p95_bytes"] == pytest.approx(np.percentile(sizes, 95), abs=1e-3)
        assert rows[key]["p50_bytes"] == pytest.approx(np.percentile(sizes, 50), abs=1e-3)
        assert rows[key]["max_bytes"] == max(sizes)
        assert rows[key]["budget_bytes"] == budget
        assert rows[key]["level"] == headroom_level(np.percentile(sizes, 95), budget)
    assert rows["model"]["level"] == "ok"
    assert rows["summary"]["level"] == "error"
    # Worst first.
    assert report["rows"][0]["key"] == "summary"


def test_rejections_are_counted_per_day_key_and_code(settings, history):
    report = telemetry_report(settings, "rejections", since="forever", now_ms=NOW_MS + 1000)
    expected: dict[str, int] = {}
    for _key, ts, _, outcome in history:
        if outcome == "rejected":
            expected[day_of(ts)] = expected.get(day_of(ts), 0) + 1
    assert {r["day"]: r["rejections"] for r in report["rows"]} == expected
    assert {r["error_code"] for r in report["rows"]} == {"METADATA_BUDGET_EXCEEDED"}
    assert {r["key"] for r in report["rows"]} == {"summary"}


@pytest.mark.parametrize("kind", REPORT_KINDS)
def test_png_chart_is_written_whole_at_its_size_and_not_blank(settings, history, tmp_path, kind):
    target = tmp_path / "charts" / f"{kind}.png"
    target.parent.mkdir()
    report = telemetry_report(settings, kind, since="forever", png=target, now_ms=NOW_MS + 1000)
    width, height, variance = png_facts(target.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert variance > 1e-3  # a blank (one-colour) image has none
    assert report["chart"] == {
        "path": str(target),
        "bytes": target.stat().st_size,
        "width": WIDTH,
        "height": HEIGHT,
    }
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left


def test_a_chart_of_no_rows_says_so_and_is_not_blank(settings, tmp_path):
    target = tmp_path / "empty.png"
    report = telemetry_report(settings, "growth", png=target, now_ms=NOW_MS)
    assert report["rows"] == []
    _, _, variance = png_facts(target.read_bytes())
    assert variance > 1e-4


def test_bad_arguments_give_codes_and_write_nothing(settings, history, tmp_path):
    with pytest.raises(WfError) as bad_since:
        telemetry_report(settings, "growth", since="7 days", png=tmp_path / "a.png")
    assert bad_since.value.code == METADATA_BAD_DURATION
    with pytest.raises(WfError) as bad_kind:
        telemetry_report(settings, "sizes", png=tmp_path / "a.png")
    assert bad_kind.value.code == TELEMETRY_BAD_ARGUMENTS
    missing = tmp_path / "no-such-folder" / "chart.png"
    with pytest.raises(WfError) as unwritable:
        telemetry_report(settings, "growth", png=missing)
    assert unwritable.value.code == TELEMETRY_CHART_WRITE_FAILED
    assert not (tmp_path / "a.png").exists() and not missing.parent.exists()


def wf(home, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env["WF_HOME"] = str(home)
    return subprocess.run(
        [str(WF), *args], env=env, capture_output=True, text=True, timeout=300, cwd=home.parent
    )


@pytest.mark.slow
def test_wf_telemetry_report_prints_the_table_json_and_chart(tmp_path):
    home = tmp_path / "home"
    synth = wf(home, "telemetry", "synth", "--rows", "20000", "--days", "5", "--json")
    assert synth.returncode == 0, synth.stderr

    chart = tmp_path / "growth.png"
    report = wf(home, "telemetry", "report", "growth", "--since", "forever", "--png", str(chart), "--json")
    assert report.returncode == 0, report.stderr
    payload = json.loads(report.stdout)
    # The report agrees with an ad-hoc query over the same view.
    query = wf(home, "telemetry", "query", "select sum(bytes), sum(writes) from key_growth", "--json")
    assert query.returncode == 0, query.stderr
    [[total_bytes, total_writes]] = json.loads(query.stdout)["rows"]
    assert sum(r["bytes"] for r in payload["rows"]) == int(total_bytes) > 0
    assert sum(r["writes"] for r in payload["rows"]) == int(total_writes)
    assert len({r["day"] for r in payload["rows"]}) == 5
    width, height, variance = png_facts(chart.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT) == (payload["chart"]["width"], payload["chart"]["height"])
    assert variance > 1e-3

    text = wf(home, "telemetry", "report", "headroom")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["domain", "key", "writes"]
    assert lines[-1].startswith("headroom since 7d: ")
    levels = {line.split()[-1] for line in lines[1:-1]}
    assert levels and levels <= set(LEVELS)


@pytest.mark.slow
def test_wf_telemetry_report_errors_exit_1_with_their_code_and_usage_errors_exit_2(tmp_path):
    home = tmp_path / "home"
    unknown = wf(home, "telemetry", "report", "sizes")
    assert unknown.returncode == 2 and "no telemetry report 'sizes'" in unknown.stderr
    empty_png = wf(home, "telemetry", "report", "growth", "--png", "")
    assert empty_png.returncode == 2 and "--png needs a file name" in empty_png.stderr
    since = wf(home, "telemetry", "report", "growth", "--since", "7 days", "--json")
    assert since.returncode == 1 and json.loads(since.stdout)["error"]["code"] == "METADATA_BAD_DURATION"
    for huge in ("99999999999d", "999999999999w", "36501d"):
        too_long = wf(home, "telemetry", "report", "growth", "--since", huge)
        assert too_long.returncode == 1 and too_long.stderr.startswith("METADATA_BAD_DURATION: ")
        assert huge in too_long.stderr and "Traceback" not in too_long.stderr
    png = wf(home, "telemetry", "report", "rejections", "--png", str(tmp_path / "missing" / "r.png"))
    assert png.returncode == 1 and png.stderr.startswith("TELEMETRY_CHART_WRITE_FAILED: ")
    assert wf(home, "telemetry", "report").returncode == 2


def test_fixed_width_keys_are_judged_by_their_schema_type_not_their_name():
    from wf_pipeline.metadata.registry import DIGEST_MAX_BYTES, KeyDescriptor, KeyRegistry
    from wf_pipeline.telemetry.headroom import is_fixed_width

    # The shipped registry: digests are fixed-width, identifiers are not.
    assert is_fixed_width("context", "context_digest") and is_fixed_width("prompt_context", "prompt_digest")
    assert not is_fixed_width("agent", "model")
    assert not is_fixed_width("context", "no_such_key") and not is_fixed_width("other", "context_digest")
    # The same name with another schema type is not fixed; another name with a digest schema is.
    custom = KeyRegistry(
        (
            KeyDescriptor("context_digest", "context", "identifier", "attested", False, 128),
            KeyDescriptor("blob_ref", "context", "digest", "attested", False, DIGEST_MAX_BYTES),
        )
    )
    assert not is_fixed_width("context", "context_digest", custom)
    assert is_fixed_width("context", "blob_ref", custom)
    # A fixed key at its budget is "fixed", never warn/error; a non-fixed one at its budget errors.
    assert headroom_level(DIGEST_MAX_BYTES, DIGEST_MAX_BYTES, fixed_width=True) == "fixed"
    assert headroom_level(DIGEST_MAX_BYTES, DIGEST_MAX_BYTES) == "error"
    assert headroom_level(DIGEST_MAX_BYTES + 1, DIGEST_MAX_BYTES, fixed_width=True) == "error"


def test_a_normal_runs_digest_keys_at_their_budget_show_no_error(settings):
    """Digests written through the product's boundary are 71 bytes against a budget of 71."""
    from wf_pipeline.metadata.boundary import FrameMetadataBoundary
    from wf_pipeline.metadata.canonical import DIGEST_PREFIX

    boundary = FrameMetadataBoundary()
    rec = recorder(settings)
    for i in range(5):
        digest = DIGEST_PREFIX + f"{i:064x}"
        accepted = boundary.validate(
            {
                "context": {"context_digest": digest},
                "prompt_context": {"prompt_digest": digest},
                "agent": {"model": "m" * 20},
            }
        )
        for key, value in accepted.items():
            descriptor = boundary.registry.get(key)
            budget = boundary.budgets.key_limit(descriptor)
            write(
                rec,
                domain=descriptor.owner_domain,
                key=key,
                size=len(value.encode()),
                budget=budget,
                ts_ms=NOW_MS - 1000 + i,
            )
    rec.flush()
    report = telemetry_report(settings, "headroom", since="1d", now_ms=NOW_MS)
    levels = {row["key"]: row["level"] for row in report["rows"]}
    assert levels == {"context_digest": "fixed", "prompt_digest": "fixed", "model": "ok"}
    ratios = {row["key"]: row["p95_ratio"] for row in report["rows"]}
    assert ratios["context_digest"] == 1
