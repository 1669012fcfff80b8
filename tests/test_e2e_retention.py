"""Retention end to end: a docs-writer run, a workspace profile with short prompt windows, `wf retention apply`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


def wf(*args: str, cwd: Path, settings) -> dict | list:
    """Run the real ``wf`` command with ``--json`` in ``cwd`` (the workspace layer) and parse its output."""
    env = {**os.environ, "WF_HOME": str(settings.home), "WF_CONFIG_DIR": str(settings.home / "user-config")}
    done = subprocess.run(
        [sys.executable, "-m", "wf_pipeline.cli.main", *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The recipe: copy the shipped profile, ADD ``prompt_render: 1s`` and ``context_payload: 1h``.

    The copy keeps everything else, its ``preset: docs_family`` included.
    """
    root = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    (root / "profiles").mkdir()
    copy = root / "profiles" / f"{WORKFLOW}.yaml"
    shutil.copyfile(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", copy)
    text = copy.read_text(encoding="utf-8")
    text = text.replace("retention:\n", "retention:\n  prompt_render: 1s\n  context_payload: 1h\n", 1)
    copy.write_text(text, encoding="utf-8")
    block = yaml.safe_load(text)["retention"]
    assert block == {"preset": "docs_family", "prompt_render": "1s", "context_payload": "1h"}
    return root


def test_prompt_renders_expire_contexts_and_outputs_stay_and_the_tree_is_reused(
    tmp_path, monkeypatch, workspace
) -> None:
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    first = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert first.ok and first.threads_reused == 0
    time.sleep(2)

    plan = wf("retention", "plan", cwd=workspace, settings=settings)
    result = wf("retention", "apply", cwd=workspace, settings=settings)

    # The plan says why: the preset's windows with the two added, and no grace.
    (policy,) = [p for p in plan["policies"] if p["workflow_id"] == WORKFLOW]
    windows = {c["artifact_class"]: (c["window"], c["lifetime_ms"]) for c in policy["classes"]}
    assert policy["grace_ms"] == 0
    assert windows["prompt_render"] == ("1s", 1_000) and windows["context_payload"] == ("1h", 3_600_000)

    classes = {group["artifact_class"] for group in result["groups"]}
    assert classes == {"prompt_render"}, result["groups"]
    assert result["deleted"] == result["tombstones_written"] == plan["count"] > 0
    assert result["bytes_freed"] == plan["bytes"] > 0
    # Every thread is completed and its final output is a head: nothing else is due yet.
    assert result["kept"]["window"] > 0

    expired_seen = 0
    for thread in first.threads:
        shown = wf("threads", "show", thread.thread_id, cwd=workspace, settings=settings)
        assert [t["status"] for t in shown["turns"]] == ["completed"] * 4
        assert all(t["gate"]["outcome"] == "pass" for t in shown["turns"])  # gate outcomes stay
        assert len(shown["prompt_link_ids"]) == 4  # prompt links stay
        for artifact in shown["artifacts"]:
            object_path = (
                settings.home / "cas" / "objects" / artifact["artifact_id"][7:9] / artifact["artifact_id"][9:]
            )
            if artifact["role"] in ("system_prompt", "prompt_template", "rendered_prompt"):
                assert artifact["state"] == "expired", artifact
                assert not object_path.exists()
                expired_seen += 1
            else:
                assert artifact["state"] == "stored", artifact
                assert object_path.exists()
    assert expired_seen > 0

    second = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert second.ok
    assert second.threads_reused == len(second.threads) == len(first.threads)
    assert second.provider_calls == 0
