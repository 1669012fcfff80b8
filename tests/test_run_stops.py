"""A run that stops (signal or error) ends every thread it created, whatever id it got."""

from __future__ import annotations

import os
import signal
import time

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings
from fullfs_support import run_on_full_fs

from wf_pipeline.errors import RUN_INSTANCE_STORAGE_ERROR, RunError
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime import RuntimeEnv, plan_run
from wf_pipeline.service.interrupts import stop_on_signals
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    with RuntimeEnv.open(settings) as opened:
        yield opened


def _plan(env, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    return plan_run(env, env.catalog.get(WORKFLOW), scan_tree(tree))


def _thread_created_later(env, plan, suffix: str):
    # A parent's id is computed when its level starts (its children's outputs are part of
    # it), so the thread that runs may carry an id the plan never listed.
    parent = next(entry for entry in plan.threads if entry.target.path == ".")
    thread = parent.thread.model_copy(
        update={
            "thread_id": f"thread:{suffix * 24}",
            "status": "running",
            "created_at_ms": now_ms(),
            "updated_at_ms": now_ms(),
        }
    )
    env.records.save_thread(thread)
    return thread.thread_id


def test_a_signal_marks_threads_created_after_the_plan_failed(env, tmp_path):
    plan = _plan(env, tmp_path)
    with pytest.raises(RunError) as caught, stop_on_signals(env) as stop:
        stop.thread_ids = [entry.thread.thread_id for entry in plan.threads]
        stop.workflow_id, stop.target_keys = WORKFLOW, [entry.target.key for entry in plan.threads]
        later = _thread_created_later(env, plan, "a")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once

    assert caught.value.code == "RUN_INTERRUPTED"
    thread = env.records.get_thread(later)
    assert (thread.status, thread.error_code) == ("failed", "RUN_INTERRUPTED")
    assert not [t for t in env.records.list_threads(WORKFLOW) if t.status in ("pending", "running")]


def test_a_run_ending_with_an_error_marks_its_unfinished_threads_failed_with_the_code(env, tmp_path):
    plan = _plan(env, tmp_path)
    with pytest.raises(RunError) as caught, stop_on_signals(env) as stop:
        stop.thread_ids = [entry.thread.thread_id for entry in plan.threads]
        stop.workflow_id, stop.target_keys = WORKFLOW, [entry.target.key for entry in plan.threads]
        later = _thread_created_later(env, plan, "b")
        raise RunError(RUN_INSTANCE_STORAGE_ERROR, "could not store the run: database or disk is full")

    assert caught.value.code == "RUN_INSTANCE_STORAGE_ERROR"  # the run's own error, unchanged
    threads = env.records.list_threads(WORKFLOW)
    assert env.records.get_thread(later).error_code == "RUN_INSTANCE_STORAGE_ERROR"
    assert threads and all(t.status == "failed" for t in threads)
    assert {t.error_code for t in threads} == {"RUN_INSTANCE_STORAGE_ERROR"}


def test_sqlite_disk_io_error_on_a_full_file_system_names_the_full_disk(tmp_path):
    mount = tmp_path / "full"
    script = f"""
import json, sqlite3
from pathlib import Path
from sqlalchemy.exc import OperationalError
from wf_pipeline.compiler.launch.storage_errors import instance_storage_errors
from wf_pipeline.errors import WfError
from wf_pipeline.settings import Settings

home = Path({str(mount)!r}) / "home"
home.mkdir()
try:
    with open(home / "fill", "wb") as handle:
        while True:
            handle.write(b"x" * 4096)
            handle.flush()
except OSError:
    pass
settings = Settings.from_env({{"WF_HOME": str(home)}})
try:
    with instance_storage_errors(settings):
        raise OperationalError("INSERT", {{}}, sqlite3.OperationalError("disk I/O error"))
except WfError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message}}))
"""
    result = run_on_full_fs(mount, 64, script)

    assert result["code"] == "RUN_INSTANCE_STORAGE_ERROR"
    assert "disk I/O error" in result["message"]
    assert "No space left on device" in result["message"] and "0 bytes free" in result["message"]
