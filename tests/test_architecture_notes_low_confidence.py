"""The architecture notes' low-confidence path end to end, and `wf replay --verify` of both paths.

A workspace copy of ``architecture_notes_v1`` raises the threshold of ``reverify``'s
``when:`` so that the branch is taken on a small tree (whose offline verification holds
every claim), and the default profile leaves it not taken. Each run goes through Dagster
(`run_workflow`); the records, the written notes, the gate checks and the replays are read
back.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.compiler import open_instance
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import explain_gates, run_workflow, show_thread
from wf_pipeline.service.replay import replay
from wf_pipeline.workflows.architecture_notes.render import NOTICE_MARKER

pytestmark = pytest.mark.slow
WORKFLOW = "architecture_notes_v1"
SHIPPED_WHEN = "architecture_verification.verified_share < 0.8"
# The offline verification of the small tree holds every claim: its share is 1.0, never
# below 0.8, so the shipped profile skips reverify. The branch runs when the share is
# *below* the threshold, so forcing it means raising the threshold above any share (a share
# is at most 1.0): "< 1.01" holds for every share and the low-confidence path is taken.
FORCED_WHEN = "architecture_verification.verified_share < 1.01"


def _workspace(parent: Path, when: str, name: str) -> Path:
    """A workspace layer whose ``architecture_notes_v1`` decides ``reverify`` by ``when``."""
    workspace = parent / name
    (workspace / "profiles").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    text = (REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8")
    # Edit the shipped text in place (its comments and layout kept); the shipped condition
    # must be there for the edit to mean anything.
    assert f'when: "{SHIPPED_WHEN}"' in text
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(
        text.replace(f'when: "{SHIPPED_WHEN}"', f'when: "{when}"'), encoding="utf-8"
    )
    doc = yaml.safe_load((workspace / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    assert next(t for t in doc["turns"] if t["turn_id"] == "reverify")["when"] == when
    return workspace


def _small_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("from .sub import helper\n", encoding="utf-8")
    (root / "pkg" / "sub" / "__init__.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    (root / "pkg" / "__main__.py").write_text("from pkg.sub import helper\nhelper()\n", encoding="utf-8")
    return root


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _run(settings, tree: Path, workspace: Path | None) -> tuple[str, str]:
    """Run the notes on ``tree``; return (thread id, the notes written)."""
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok, [(t.path, t.status, t.error_code, t.error_text) for t in summary.threads]
    [thread] = summary.threads
    assert thread.status == "completed" and thread.path == "."
    return thread.thread_id, Path(thread.output_path or "").read_text(encoding="utf-8")


def _latest(settings, thread_id: str) -> dict[str, Any]:
    with RuntimeEnv.open(settings) as env:
        return env.records.latest_turns(thread_id)


def _notes_check(settings) -> Any:
    """The latest evaluation of the notes gate's Dagster check."""
    instance = open_instance(settings)
    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey([WORKFLOW, "architecture_notes"]), "notes_gate"), limit=1
    )
    return records[0].event.dagster_event.asset_check_evaluation_data


def _gates_of(settings, thread_id: str) -> dict[str, dict[str, Any]]:
    return {t["turn_id"]: t for t in explain_gates(settings, thread_id)["turns"]}


def _assert_replay_matches(settings, tree: Path, workspace: Path | None, taken: bool) -> None:
    report = replay(settings, tree=tree, workflow_id=WORKFLOW, verify=True, workspace_dir=workspace)
    [thread] = report.threads
    assert thread.matched, [d.to_json() for d in thread.divergences]
    assert thread.provider_calls == 0
    reverify = thread.turns["reverify"][-1]
    assert reverify.branch is not None and reverify.branch["result"] is taken
    assert reverify.status == ("completed" if taken else "skipped")
    # The parallel pair replayed in the segment it ran in.
    assert thread.turns["module_graph"][-1].segment == thread.turns["entry_points"][-1].segment
    assert thread.turns["module_graph"][-1].segment is not None


def test_the_forced_low_confidence_path_runs_reverify_shows_the_notice_and_warns(settings, tmp_path) -> None:
    tree = _small_tree(tmp_path / "small")
    workspace = _workspace(tmp_path, FORCED_WHEN, "forced")
    thread_id, notes = _run(settings, tree, workspace)

    latest = _latest(settings, thread_id)
    reverify = latest["reverify"]
    assert reverify.status == "completed" and reverify.provider_called
    assert reverify.branch is not None and reverify.branch["result"] is True
    assert reverify.branch["expression"] == FORCED_WHEN
    assert reverify.branch["reads"] == {"architecture_verification.verified_share": 1.0}
    assert latest["render"].status == "completed"

    # The notice opens the notes (after the title), and the final gate says warn, not pass.
    assert notes.startswith("# Architecture of small\n\n> " + NOTICE_MARKER)
    gates = _gates_of(settings, thread_id)
    assert gates["render"]["outcome"] == "warn"
    assert set(gates["render"]["rules"]) == {"notes.needs_review"}
    [finding] = gates["render"]["rules"]["notes.needs_review"]
    assert finding["code"] == "NOTES_NEED_REVIEW" and finding["pointer"] == "output:3"
    # Every claim held, even under the stricter rules: the advisory reverify gate passes.
    assert gates["reverify"]["outcome"] == "pass"
    assert {gates[t]["outcome"] for t in ("module_graph", "entry_points", "synthesis", "verification")} == {
        "pass"
    }

    shown = show_thread(settings, thread_id)
    assert shown["status"] == "completed" and shown["error_code"] is None
    render_gate = next(t["gate"] for t in shown["turns"] if t["turn_id"] == "render")
    assert (render_gate["outcome"], render_gate["reasons"]) == ("warn", ["NOTES_NEED_REVIEW"])

    # In Dagster: a failed evaluation of severity WARN, which blocks nothing.
    evaluation = _notes_check(settings)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.metadata["outcome"].value == "warn"

    _assert_replay_matches(settings, tree, workspace, taken=True)


def test_the_default_profile_skips_reverify_without_notice_and_passes(settings, tmp_path) -> None:
    tree = _small_tree(tmp_path / "small")
    thread_id, notes = _run(settings, tree, None)

    reverify = _latest(settings, thread_id)["reverify"]
    assert reverify.status == "skipped" and not reverify.provider_called
    assert reverify.output_artifact_id is None
    assert reverify.branch is not None and reverify.branch["result"] is False
    assert reverify.branch["expression"] == SHIPPED_WHEN
    assert reverify.branch["reads"] == {"architecture_verification.verified_share": 1.0}

    assert NOTICE_MARKER not in notes
    gates = _gates_of(settings, thread_id)
    assert "reverify" not in gates
    assert (gates["render"]["outcome"], gates["render"]["rules"]) == ("pass", {})
    evaluation = _notes_check(settings)
    assert evaluation.passed and evaluation.metadata["outcome"].value == "pass"

    _assert_replay_matches(settings, tree, None, taken=False)

    # The threshold changed in the workspace between the run and the replay: the decision
    # differs, and the replay says so as a branch divergence on reverify.
    forced = _workspace(tmp_path, FORCED_WHEN, "forced")
    report = replay(settings, tree=tree, workflow_id=WORKFLOW, verify=True, workspace_dir=forced)
    [thread] = report.threads
    assert not thread.matched
    branch = [d for d in thread.divergences if d.artifact_class == "branch"]
    assert [(d.turn_id, d.expected, d.actual) for d in branch] == [("reverify", "not_taken", "taken")]
    assert branch[0].first_difference is not None and branch[0].first_difference.input == "when"
    # The notes that follow differ too: their request now holds reverify's report.
    assert any(d.turn_id == "render" for d in thread.divergences)
