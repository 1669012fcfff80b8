"""``wf migrate``: threads on older code versions, the turns whose requests change, and the re-run
(real SQLite records and CAS, Dagster runs, the offline provider)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import run_workflow
from wf_pipeline.service.migrate import migrate_workflow

pytestmark = pytest.mark.slow

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


def _workspace(root: Path) -> Path:
    """A workspace layer at ``root`` holding a copy of the shipped profile and its prompts."""
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    (root / "profiles").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", root / "profiles" / f"{WORKFLOW}.yaml")
    return root


def _edit_prompt(workspace: Path, turn: str) -> None:
    prompt = workspace / "assets" / "prompts" / "docs_writer" / f"{turn}.md"
    prompt.write_text(prompt.read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home").model_copy(update={"provider": "offline"})
    workspace = _workspace(tmp_path / "ws")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok and summary.provider_calls == len(TURNS) * len(summary.threads)
    return settings, workspace, tree, summary


def test_nothing_to_migrate_while_every_thread_is_current(setup):
    settings, workspace, _, _ = setup
    report = migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()
    assert report["threads"] == [] and report["totals"]["threads"] == 0 and not report["applied"]


def test_a_changed_template_changes_its_turn_and_every_turn_downstream(setup):
    settings, workspace, tree, summary = setup
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        old_version = env.catalog.get(WORKFLOW).code_version
    _edit_prompt(workspace, "readme_struct")
    report = migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()
    threads = report["threads"]
    assert [t["thread_id"] for t in threads] == [t.thread_id for t in summary.threads]
    (thread,) = threads
    assert thread["pinned_code_version"] == old_version
    assert thread["current_code_version"] == report["code_version"] != old_version
    assert thread["root"] == str(tree) and thread["path"] == "."
    turns = {t["turn_id"]: t for t in thread["turns"]}
    assert [turns[t]["change"] for t in TURNS] == ["unchanged", "unchanged", "changed", "downstream"]
    assert turns["readme_struct"]["fields"][:2] == ["template", "prompt"]
    assert [turns[t]["answered"] for t in TURNS] == [True, True, False, False]
    assert (thread["turns_changing"], thread["turns_total"]) == (2, 4)
    assert report["totals"] == {
        "threads": 1,
        "turns": 4,
        "turns_changing": 2,
        "provider_calls": 2,
        "answered": 2,
    }


def test_apply_reruns_the_targets_at_the_cost_the_plan_said(setup):
    settings, workspace, tree, summary = setup
    _edit_prompt(workspace, "style_refine")
    plan = migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()
    assert plan["totals"]["provider_calls"] == 1
    applied = migrate_workflow(settings, WORKFLOW, apply=True, workspace_dir=workspace).to_json()
    assert applied["applied"] and applied["missing_roots"] == []
    (run,) = applied["runs"]
    assert run["root"] == str(tree) and run["failed"] == 0 and run["dagster_run_ids"]
    # The unchanged turns took their recorded responses; only the changed one called.
    assert run["provider_calls"] == plan["totals"]["provider_calls"] == 1
    after = migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()
    assert after["threads"] == []
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        current = env.catalog.get(WORKFLOW).code_version
        threads = env.records.list_threads(WORKFLOW)
    assert sorted(t.code_version for t in threads) == sorted(
        [current, plan["threads"][0]["pinned_code_version"]]
    )


def test_a_thread_recorded_before_pinning_is_judged_by_its_frame_id(setup):
    settings, workspace, _, summary = setup
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        old_version = env.catalog.get(WORKFLOW).code_version
        for thread in env.records.list_threads(WORKFLOW):
            env.records.save_thread(
                thread.model_copy(
                    update={"code_version": None, "profile_version": None, "profile_artifact_id": None}
                )
            )
    assert migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()["threads"] == []
    _edit_prompt(workspace, "evidence_gather")
    report = migrate_workflow(settings, WORKFLOW, workspace_dir=workspace).to_json()
    (thread,) = report["threads"]
    assert thread["pinned_code_version"] == old_version
    assert [t["change"] for t in thread["turns"]] == ["changed", "downstream", "downstream", "downstream"]
    assert report["totals"]["provider_calls"] == 4 and report["totals"]["answered"] == 0


# --- the command ----------------------------------------------------------------------------


def _wf(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(home), WF_CONFIG_DIR=str(home / "user-config"), WF_PROVIDER="offline")
    return subprocess.run([str(WF), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_the_command_plans_as_json_or_a_table_and_applies(tmp_path):
    cwd = _workspace(tmp_path / "cwd")
    home = tmp_path / "home"
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    ran = _wf(cwd, home, "run", WORKFLOW, str(tree), "--json")
    assert ran.returncode == 0, ran.stderr
    (thread,) = json.loads(ran.stdout)["threads"]

    usage = _wf(cwd, home, "migrate", WORKFLOW)
    assert usage.returncode == 2 and "--plan" in usage.stderr
    both = _wf(cwd, home, "migrate", WORKFLOW, "--plan", "--apply")
    assert both.returncode == 2

    _edit_prompt(cwd, "verification")
    planned = _wf(cwd, home, "migrate", WORKFLOW, "--plan", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert [t["thread_id"] for t in plan["threads"]] == [thread["thread_id"]]
    assert plan["totals"]["turns_changing"] == 3 and plan["totals"]["answered"] == 1

    table = _wf(cwd, home, "migrate", WORKFLOW, "--plan")
    assert table.returncode == 0, table.stderr
    assert thread["thread_id"] in table.stdout and "3/4" in table.stdout
    assert "3 turns will call the provider, 1 turn answered from recorded responses" in " ".join(
        table.stdout.split()
    )

    applied = _wf(cwd, home, "migrate", WORKFLOW, "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["applied"] and len(result["runs"]) == 1
    # Downstream turns count as changed; the offline provider answers from its inputs, not
    # the prompt, so the edited turn's output (and the turns after it) may come out the same:
    # the plan is an upper bound, the edited turn itself always calls.
    assert 1 <= result["runs"][0]["provider_calls"] <= plan["totals"]["provider_calls"]
    again = json.loads(_wf(cwd, home, "migrate", WORKFLOW, "--plan", "--json").stdout)
    assert again["threads"] == []
