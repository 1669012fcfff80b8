"""The record archive is always ``$WF_HOME/archive``: a custom telemetry URL never moves it, and
the telemetry writer never touches it, so an archive problem cannot cost telemetry rows."""

from __future__ import annotations

import os
import subprocess

import pytest
from e2e_support import REPO_ROOT
from telemetry_support import recorder, write

from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import METADATA_WRITES, TelemetryStore
from wf_pipeline.telemetry.query import archive_location, run_query

WF = REPO_ROOT / ".venv" / "bin" / "wf"
NOW_MS = 1_790_000_000_000


def test_a_custom_telemetry_url_writes_no_archive_beside_it_and_the_view_reads_wf_home(tmp_path):
    home = tmp_path / "home"
    settings = Settings.from_env(
        {"WF_HOME": str(home), "WF_TELEMETRY_URL": str(tmp_path / "elsewhere" / "tele")}
    )
    rec = recorder(settings)
    write(rec, key="model", size=10, budget=128, ts_ms=NOW_MS)
    assert rec.flush() == 1
    # The writer wrote telemetry only: no archive anywhere.
    assert not (tmp_path / "elsewhere" / "archive").exists()
    assert not (home / "archive").exists()
    # The view resolves before the first compaction, over $WF_HOME/archive.
    assert archive_location(settings) == str(home / "archive")
    assert run_query(settings, "select count(*) from archived_threads") == (["count_star()"], [(0,)])
    assert (home / "archive" / "threads").is_dir()
    assert not (tmp_path / "elsewhere" / "archive").exists()


def test_an_unwritable_archive_never_drops_telemetry_rows(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "archive").write_text("not a folder", encoding="utf-8")  # the archive cannot be seeded
    settings = Settings.from_env({"WF_HOME": str(home)})
    rec = recorder(settings)
    for i in range(3):
        write(rec, key="model", size=10 + i, budget=128, ts_ms=NOW_MS + i)
    assert rec.flush() == 3
    assert TelemetryStore(settings.telemetry_url).read_table(METADATA_WRITES).num_rows == 3


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_a_relative_telemetry_url_creates_no_archive_in_the_working_directory(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(tmp_path / "home"), WF_TELEMETRY_URL="reltele")
    synth = subprocess.run(
        [str(WF), "telemetry", "synth", "--rows", "10", "--days", "1"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert synth.returncode == 0, synth.stderr
    assert (cwd / "reltele").is_dir() and not (cwd / "archive").exists()
