"""``wf telemetry query`` is read-only: one SELECT statement, files only under the telemetry and archive roots."""

from __future__ import annotations

import pytest

from wf_pipeline.errors import TELEMETRY_QUERY_INVALID, TelemetryError
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.query import run_query


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"WF_HOME": str(tmp_path / "home")})


def refused(settings: Settings, sql: str) -> str:
    with pytest.raises(TelemetryError) as caught:
        run_query(settings, sql)
    assert caught.value.code == TELEMETRY_QUERY_INVALID
    assert str(caught.value).startswith(f"{TELEMETRY_QUERY_INVALID}: ")
    return str(caught.value)


def test_writing_statements_are_refused_and_write_nothing(settings, tmp_path):
    out = tmp_path / "x.csv"
    db = tmp_path / "x.duckdb"
    assert "COPY" in refused(settings, f"COPY (select 1 a) TO '{out}'")
    assert "ATTACH" in refused(settings, f"ATTACH '{db}' AS x")
    assert "DROP" in refused(settings, "drop view metadata_writes")
    assert "SET" in refused(settings, "SET enable_external_access = true")
    assert "CREATE" in refused(settings, "create table t as select 1")
    assert not out.exists() and not db.exists()
    # The view is still there for the next query.
    columns, rows = run_query(settings, "select count(*) as n from metadata_writes")
    assert columns == ["n"] and rows == [(0,)]


def test_several_statements_at_once_are_refused(settings):
    assert "2 statements" in refused(settings, "select 1; select 2")
    assert "0 statements" in refused(settings, "  ")


def test_files_outside_the_roots_cannot_be_read(settings, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n", encoding="utf-8")
    assert "secret.csv" in refused(settings, f"select * from read_csv('{secret}')")
    refused(settings, f"select * from read_text('{secret}')")
    refused(settings, "select * from read_csv('/etc/passwd', sep = ':')")


def test_the_views_and_the_roots_stay_readable(settings):
    columns, rows = run_query(settings, "select count(*) from archived_threads")
    assert rows == [(0,)]
    root = settings.telemetry_url
    _, rows = run_query(
        settings, f"select count(*) from read_parquet('{root}/metadata_writes/*/*/*.parquet')"
    )
    assert rows == [(0,)]
    _, rows = run_query(settings, "from budget_headroom")
    assert rows == []
