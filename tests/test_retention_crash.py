"""Crash safety of `wf retention apply`: SIGKILLed mid-sweep again and again, then run to the end."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import isolated_settings

from wf_pipeline.cas import open_cas
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.profiles import Layer, load_catalog
from wf_pipeline.records import open_record_store
from wf_pipeline.retention.holds import place_hold
from wf_pipeline.retention.reads import ExpiryAwareStore
from wf_pipeline.retention.sweep import plan_retention
from wf_pipeline.retention.synthetic import write_workload
from wf_pipeline.telemetry import DisabledTelemetryRecorder
from wf_pipeline.workflows import load_builtin_workflows

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"
REPO_ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000
THREADS = 6_000  # 30,000 expired artifacts: 30 batches, so every kill lands mid-sweep
KILLS = 10


class Env:
    def __init__(self, records, cas, catalog) -> None:
        self.records, self.cas, self.catalog = records, cas, catalog
        self.telemetry = DisabledTelemetryRecorder()


def tombstone_count(database: Path) -> int:
    # Read-only, so watching changes nothing the sweep sees.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM wf_tombstones").fetchone()[0]


def check_invariants(settings, planned: set[str], kept: set[str], *, finished: bool) -> None:
    records = open_record_store(settings.records_url)
    cas = open_cas(settings.cas_url)
    try:
        tombstoned = {t.artifact_id for t in records.list_tombstones()}
        gone = {artifact_id for artifact_id in planned | kept if not cas.exists(artifact_id)}
        assert gone <= tombstoned, "an object was deleted without its tombstone"
        assert not gone & kept, "an object a rule keeps is gone"
        assert tombstoned <= planned, "a tombstone names an artifact no rule let go"
        if finished:
            assert gone == planned == tombstoned
            present = set(cas.iter_artifact_ids())
            assert records.referenced_artifact_ids() <= present | tombstoned
            assert not present & tombstoned
    finally:
        records.close()
        cas.close()


def test_sigkilled_sweeps_never_lose_a_tombstone_or_a_kept_object(tmp_path, monkeypatch) -> None:
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    settings.ensure_dirs()
    records = open_record_store(settings.records_url)
    cas = open_cas(settings.cas_url)
    workload = write_workload(
        records, cas, workflow_id=WORKFLOW, threads=THREADS, created_at_ms=now_ms() - 60 * DAY_MS
    )
    # Rules that keep expired artifacts: a thread that may resume, and a thread under hold.
    resumable = records.get_thread(workload.thread_ids[0]).model_copy(update={"status": "failed"})
    records.save_thread(resumable)
    place_hold(records, thread_id=workload.thread_ids[1], reason="audit")
    load_builtin_workflows()
    catalog = load_catalog([Layer("builtin", REPO_ROOT)])
    plan = plan_retention(Env(records, ExpiryAwareStore(cas, records), catalog), now_ms=now_ms())
    planned = {item.artifact_id for item in plan.deletions}
    kept = records.referenced_artifact_ids() - planned
    records.close()
    cas.close()
    assert len(planned) == 5 * (THREADS - 2)  # the shared system prompt is held by thread 1
    assert plan.kept["resumable"] and plan.kept["hold"]

    database = Path(settings.records_url.removeprefix("sqlite:///"))
    env = {**os.environ, "WF_HOME": str(settings.home), "WF_CONFIG_DIR": str(settings.home / "user-config")}
    command = [sys.executable, "-m", "wf_pipeline.cli.main", "retention", "apply", "--json"]
    rng = random.Random(9)
    kills = runs = 0
    while kills < KILLS:
        runs += 1
        before = tombstone_count(database)
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # Wait for this sweep's first committed batch, then kill it a random moment later.
        while process.poll() is None and tombstone_count(database) == before:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        check_invariants(settings, planned, kept, finished=False)
        assert runs < 3 * KILLS, "the sweeps finished before enough kills landed"

    final = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    check_invariants(settings, planned, kept, finished=True)
