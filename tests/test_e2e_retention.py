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
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings, with_profile_keys

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

    The copy keeps everything else; the ``preset: docs_family`` comes from the family base.
    """
    root = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    (root / "profiles").mkdir()
    copy = root / "profiles" / f"{WORKFLOW}.yaml"
    shutil.copyfile(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", copy)
    text = copy.read_text(encoding="utf-8")
    # The preset comes from the docs family base; the copy's own keys merge over it.
    text = with_profile_keys(text, "retention", "  prompt_render: 1s\n  context_payload: 1h\n")
    copy.write_text(text, encoding="utf-8")
    block = yaml.safe_load(text)["retention"]
    assert block == {"prompt_render": "1s", "context_payload": "1h"}
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


def _retention_workspace(root: Path, windows: dict[str, str]) -> Path:
    """A workspace layer whose copy of the shipped profile has the retention block ``windows``."""
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text())
    document["retention"] = windows
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return root


def test_expired_intermediates_of_completed_threads_cost_no_provider_call(
    tmp_path, monkeypatch, caplog
) -> None:
    windows = {"prompt_render": "1s", "context_payload": "1s", "provider_response": "1s", "output": "1s"}
    workspace = _retention_workspace(tmp_path / "workspace", windows)
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    first = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert first.ok
    time.sleep(2)
    applied = wf("retention", "apply", cwd=workspace, settings=settings)
    assert {group["artifact_class"] for group in applied["groups"]} >= {"output"}  # intermediates went

    with (tree / "stationkit" / "sensors" / "base.py").open("a", encoding="utf-8") as handle:
        handle.write("# changed\n")
    caplog.set_level("INFO")
    second = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert second.ok
    outcomes = second.counts
    changed = [t for t in second.threads if not t.reused]
    # sensors/, stationkit/ and the root are documented again; every other thread is reused whole.
    assert len(changed) == 3, outcomes
    assert second.threads_reused == len(second.threads) - 3
    turns = 4
    # Every turn of the three ran again; a request answered before (its answer kept) took it.
    assert second.provider_calls + second.recorded_answers == len(changed) * turns
    assert "runs again" not in caplog.text
    for thread in second.threads:
        if thread.reused:
            shown = wf("threads", "show", thread.thread_id, cwd=workspace, settings=settings)
            assert [t["attempt"] for t in shown["turns"]] == [1] * turns, shown["turns"]


def test_expired_head_outputs_are_reported_expired_by_export_and_remade_by_a_run(
    tmp_path, monkeypatch, caplog
) -> None:
    windows = {"output": "1s", "output_of_heads": "expire"}
    workspace = _retention_workspace(tmp_path / "workspace", windows)
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    first = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert first.ok
    time.sleep(2)
    wf("retention", "apply", cwd=workspace, settings=settings)

    env = {**os.environ, "WF_HOME": str(settings.home), "WF_CONFIG_DIR": str(settings.home / "user-config")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wf_pipeline.cli.main",
            "export",
            str(tree),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr + done.stdout  # a directory's output failure, as in a run
    exported = json.loads(done.stdout)
    assert exported["missing"] == [] and exported["written"] == []
    assert len(exported["expired"]) == len(first.threads)
    assert {item["code"] for item in exported["expired"]} == {"CAS_ARTIFACT_EXPIRED"}
    assert {item["thread_id"] for item in exported["expired"]} == {t.thread_id for t in first.threads}
    text = subprocess.run(
        [sys.executable, "-m", "wf_pipeline.cli.main", "export", str(tree), "--out", str(tmp_path / "out")],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert text.returncode == 1 and "CAS_ARTIFACT_EXPIRED" in text.stdout + text.stderr

    # A run makes the expired finals again, and says why each turn runs again.
    caplog.set_level("INFO")
    second = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert second.ok
    assert "CAS_ARTIFACT_EXPIRED: turn" in caplog.text
    assert "is missing or corrupt" not in caplog.text
