"""A run's report stays whole and honest: per-directory output failures, output folders in the tree."""

from __future__ import annotations

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime import RuntimeEnv, plan_run, summarize_run
from wf_pipeline.runtime.failure import mark_thread_failed
from wf_pipeline.runtime.threads import scan_workspace
from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def test_an_output_that_cannot_be_written_fails_its_directory_not_the_report(settings, tmp_path):
    tree = tmp_path / "t"
    (tree / "pkg" / "README.md").mkdir(parents=True)
    (tree / "pkg" / "a.py").write_text("x = 1\n")
    (tree / "pkg" / "README.md" / "notes.md").write_text("# inner\n")
    (tree / "b.py").write_text("y = 2\n")

    summary = run_workflow(settings, WORKFLOW, tree)

    by_path = {t.path: t for t in summary.threads}
    assert set(by_path) == {".", "pkg", "pkg/README.md"}
    assert all(t.status == "completed" for t in summary.threads)
    # pkg's README.md is the directory above: its output alone is not written.
    assert by_path["pkg"].output_error.startswith("RUN_OUTPUT_WRITE_FAILED:")
    assert by_path["pkg"].output_path is None
    assert by_path["."].output_path and by_path["pkg/README.md"].output_path
    assert by_path["."].output_error is None
    assert summary.counts["output_failed"] == 1
    assert summary.counts["written"] == 2
    assert not summary.ok


def test_an_output_folder_inside_the_tree_is_not_scanned(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO, tmp_path / "outin")
    out = tree / "gen"

    first = run_workflow(settings, WORKFLOW, tree, out_dir=out)
    assert first.ok, [(t.path, t.status) for t in first.threads]
    assert first.counts["documented"] == 8 and first.counts["written"] == 8
    assert not any(t.path == "gen" or t.path.startswith("gen/") for t in first.threads)
    assert (out / "README.md").is_file()

    # The READMEs now inside the tree change no directory's identity.
    again = run_workflow(settings, WORKFLOW, tree, out_dir=out)
    assert again.ok and again.counts["reused"] == 8 and again.provider_calls == 0
    assert {t.thread_id for t in again.threads} == {t.thread_id for t in first.threads}


def test_a_summary_counts_only_its_own_provider_calls(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO, tmp_path / "shared")
    with RuntimeEnv.open(settings) as env:
        loaded = env.catalog.get(WORKFLOW)
        plan = plan_run(env, loaded, scan_workspace(env, loaded, tree))
        started = now_ms()
        assert len(plan.pending) == 8
        # Another command documents the whole tree while this one has only planned it.
        other = run_workflow(settings, WORKFLOW, tree)
        assert other.provider_calls == 32 and other.counts["documented"] == 8

        mine = summarize_run(env, plan, started_ms=started, dagster_run_ids=[])

    assert mine.ok
    assert mine.provider_calls == 0
    assert mine.counts["documented"] == 0 and mine.counts["reused"] == 8


def test_a_run_after_a_failed_child_leaves_no_thread_pending(settings, tmp_path):
    """A child that failed before runs again first: its parent's thread is saved only for the
    child's new output, so no thread saved for the failed one stays pending for good."""
    tree = copy_tree(SAMPLE_REPO, tmp_path / "t")
    assert run_workflow(settings, WORKFLOW, tree).ok
    leaf = tree / "stationkit" / "sensors"
    (leaf / "extra.py").write_text('def extra():\n    """Added."""\n')
    with RuntimeEnv.open(settings) as env:
        loaded = env.catalog.get(WORKFLOW)
        plan = plan_run(env, loaded, scan_workspace(env, loaded, tree))
        # A run stopped while the leaf ran: the leaf's new thread ends failed.
        (leaf_plan,) = [entry for entry in plan.pending if entry.target.path == "stationkit/sensors"]
        mark_thread_failed(env, env.records.get_thread(leaf_plan.thread.thread_id), RuntimeError())

    again = run_workflow(settings, WORKFLOW, tree)

    assert again.ok, [(t.path, t.status) for t in again.threads]
    assert again.counts["documented"] == 3  # the leaf, its parent and the root
    with RuntimeEnv.open(settings) as env:
        statuses = {t.status for t in env.records.list_threads(workflow_id=loaded.profile.workflow_id)}
    assert statuses <= {"completed", "failed"}, statuses
