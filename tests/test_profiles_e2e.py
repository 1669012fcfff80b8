"""Failure-policy fields through Dagster: a workspace profile changes how `wf run` and `wf resume` behave."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, VerificationBreaker, copy_tree, isolated_settings

from wf_pipeline.service import resume_thread, run_workflow

pytestmark = pytest.mark.slow

WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


def _workspace(tmp_path: Path, **failure_policy: object) -> Path:
    """A workspace layer whose copy of the shipped profile has this failure policy."""
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["failure_policy"] = failure_policy
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return workspace


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def tree(tmp_path):
    return copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")


# From the first turn, evidence_gather asks what it asked before and takes its recorded answer
# (wf_pipeline.runtime.requests); the failed verification is asked anew.
@pytest.mark.parametrize(("from_failed_turn", "resumed_turns"), [(True, TURNS[1:]), (False, TURNS[1:])])
def test_resume_starts_where_the_profile_says(settings, tree, tmp_path, from_failed_turn, resumed_turns):
    workspace = _workspace(tmp_path, mode="stop_on_gate_fail", resume_from_failed_turn=from_failed_turn)
    provider = VerificationBreaker(broken=True)
    (failed,) = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider).threads
    assert failed.status == "failed" and provider.calls == TURNS[:2]

    provider.broken, provider.calls = False, []
    resumed = resume_thread(
        settings, failed.thread_id, workspace_dir=workspace, out_dir=tmp_path / "out", provider=provider
    )
    assert resumed.ok and provider.calls == resumed_turns
    assert (tmp_path / "out" / "README.md").read_text(encoding="utf-8").startswith("# ")


def test_mode_continue_records_the_failing_verdict_and_finishes_the_thread(settings, tree, tmp_path):
    workspace = _workspace(tmp_path, mode="continue")
    provider = VerificationBreaker(broken=True)
    summary = run_workflow(
        settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider, out_dir=tmp_path / "out"
    )
    (thread,) = summary.threads
    assert provider.calls == TURNS
    assert thread.status == "completed" and thread.output_path == str(tmp_path / "out" / "README.md")
