"""Crypto-shredding end to end: a docs-writer run with every class encrypted, its outputs' lineage destroyed,
then ``wf export`` reports the shredded outputs and ``wf threads show`` marks them (records stay)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.service import keys, run_workflow, show_thread

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


def _encrypted_workspace(root: Path) -> Path:
    """A workspace layer whose copy of the shipped profile encrypts every class (preset all_required)."""
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["encryption"] = {"preset": "all_required"}
    (root / "profiles").mkdir()
    (root / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return root


def test_destroyed_output_lineage_is_reported_shredded_by_export_and_threads_show(tmp_path, monkeypatch):
    workspace = _encrypted_workspace(tmp_path / "workspace")
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    first = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert first.ok and first.threads
    # The embedded default made the master key file on first use.
    assert settings.default_master_key_file.exists()

    day = datetime.now(tz=UTC).strftime("%Y%m%d")
    destroyed = keys.destroy_keys(settings, lineage=f"output:{day}", confirm=True)
    assert destroyed["data_keys_shredded"] >= len(first.threads)

    env = {**os.environ, "WF_HOME": str(settings.home), "WF_CONFIG_DIR": str(settings.home / "user-config")}
    command = [
        sys.executable,
        "-m",
        "wf_pipeline.cli.main",
        "export",
        str(tree),
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(
        [*command, "--json"], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr + done.stdout
    exported = json.loads(done.stdout)
    assert exported["written"] == [] and exported["expired"] == []
    assert {item["code"] for item in exported["shredded"]} == {"CAS_KEY_DESTROYED"}
    assert {item["thread_id"] for item in exported["shredded"]} == {t.thread_id for t in first.threads}
    text = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert text.returncode == 1 and "CAS_KEY_DESTROYED" in text.stdout + text.stderr

    shown = show_thread(settings, first.threads[0].thread_id)
    states = {a["role"]: set() for a in shown["artifacts"]}
    for artifact in shown["artifacts"]:
        states[artifact["role"]].add(artifact["state"])
    assert states["output"] == {"shredded"}
    assert states["rendered_prompt"] == {"stored"}  # another class's lineage: untouched
    assert len(shown["turns"]) == 4

    report = keys.keys_report(settings)
    assert report["by_class"] == {"output": destroyed["data_keys_shredded"]}
    assert {t["thread_id"] for t in report["by_thread"]} == {t.thread_id for t in first.threads}
