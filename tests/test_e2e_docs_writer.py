"""The docs writer end to end through Dagster: sample tree, reuse, incremental reruns, gates, resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, home_store, isolated_settings

from wf_pipeline.compiler import open_instance
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.queries import thread_details
from wf_pipeline.service import resume_thread, run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def tree(tmp_path):
    return copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")


def _cas_object_bytes(settings, artifact_id: str) -> bytes:
    # Objects rest sealed: read through the home's keyring (the plaintext, verified).
    with home_store(settings.home) as store:
        return store.get(artifact_id)


def test_sample_tree_documents_every_directory_and_reruns_for_free(settings, tree):
    summary = run_workflow(settings, WORKFLOW, tree)
    # web/static holds only a binary logo: nothing a claim could cite, so no thread.
    assert {t.path for t in summary.threads} == {
        ".",
        "docs",
        "scripts",
        "stationkit",
        "stationkit/sensors",
        "stationkit/storage",
        "tests",
        "web",
    }
    # Bottom-up: every directory's thread comes after its subdirectories'.
    order = [t.path for t in summary.threads]
    assert order.index("stationkit/sensors") < order.index("stationkit") < order.index(".")
    assert summary.ok, [(t.target, t.status) for t in summary.threads]
    assert summary.provider_calls == 4 * len(summary.threads)
    assert summary.threads_reused == 0

    env = RuntimeEnv.open(settings)
    for thread in summary.threads:
        details = thread_details(env, thread.thread_id)
        assert [t["turn_id"] for t in details["turns"]] == TURNS
        assert [t["seq"] for t in details["turns"]] == [1, 2, 3, 4]
        for turn in details["turns"]:
            assert turn["status"] == "completed"
            assert turn["gate"]["outcome"] == "pass", turn["gate"]
            stored = _cas_object_bytes(settings, turn["output_artifact_id"])
            assert "sha256:" + hashlib.sha256(stored).hexdigest() == turn["output_artifact_id"]
        readme = Path(thread.output_path)
        assert readme.read_bytes() == _cas_object_bytes(settings, thread.final_artifact_id)
        text = readme.read_text()
        assert str(tree) not in text and str(settings.home) not in text
        assert text.startswith("# ")

    # Outputs mirror the tree under WF_HOME/out/<tree name>~<root digest>.
    out = Path(summary.out_dir)
    assert out.parent == settings.out_dir and out.name.startswith(f"{tree.name}~")
    assert (out / "README.md").is_file()
    assert (out / "stationkit" / "sensors" / "README.md").is_file()
    root_readme = (out / "README.md").read_text()
    assert "stationkit/" in root_readme  # bottom-up: the root sees its children's READMEs

    # Every run is on the instance the UI reads.
    instance = open_instance(settings)
    runs = instance.get_run_records()
    assert {r.dagster_run.run_id for r in runs} == set(summary.dagster_run_ids)

    again = run_workflow(settings, WORKFLOW, tree)
    assert again.provider_calls == 0
    assert again.threads_reused == len(summary.threads)
    assert again.dagster_run_ids == ()
    assert [t.final_artifact_id for t in again.threads] == [t.final_artifact_id for t in summary.threads]


def test_changing_one_file_reruns_only_its_ancestors(settings, tree):
    first = run_workflow(settings, WORKFLOW, tree)
    assert first.ok
    changed = tree / "stationkit" / "sensors" / "simulated.py"
    changed.write_text(
        changed.read_text()
        + '\n\ndef extra_probe() -> int:\n    """Return a fixed probe id."""\n    return 7\n'
    )
    second = run_workflow(settings, WORKFLOW, tree)
    assert second.ok
    rerun = {t.path for t in second.threads if not t.reused}
    assert rerun == {"stationkit/sensors", "stationkit", "."}
    # Every turn of the three ran again; a turn whose request is unchanged took its recorded answer.
    assert second.provider_calls + second.recorded_answers == 4 * 3
    assert second.provider_calls >= 4  # the changed directory's own context changed
    sensors = next(t for t in second.threads if t.path == "stationkit/sensors")
    assert "extra_probe" in Path(sensors.output_path).read_text()


class _BreakingProvider:
    """The offline provider, except that one turn of one target returns an empty section set."""

    def __init__(self, target_suffix: str, output_type: str) -> None:
        self._inner = create_provider("offline")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self._target_suffix = target_suffix
        self._output_type = output_type
        self.calls: list[tuple[str, str]] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls.append((request.thread_id, request.turn_id))
        response = self._inner.complete(request)
        context = json.loads(request.inputs.get("context", "{}") or "{}")
        path = context.get("target", {}).get("path", "")
        if request.output_type == self._output_type and path.endswith(self._target_suffix):
            # A verification report that verifies nothing: the gate must reject it.
            return ProviderResponse(
                text=json.dumps({"verified_claims": [], "rejected_claims": [], "reasons": {}}),
                provider_type="offline",
                model="offline-v1",
            )
        return response


def test_failed_gate_stops_only_its_thread_and_resume_skips_completed_turns(settings, tree):
    breaking = _BreakingProvider("stationkit/storage", "verification_report")
    summary = run_workflow(settings, WORKFLOW, tree, provider=breaking)
    by_path = {t.path: t for t in summary.threads}
    assert by_path["stationkit/storage"].status == "failed"
    assert by_path["stationkit/storage"].output_path is None
    others = [t for t in summary.threads if t.path != "stationkit/storage"]
    assert all(t.status == "completed" for t in others)

    env = RuntimeEnv.open(settings)
    failed = thread_details(env, by_path["stationkit/storage"].thread_id)
    assert [t["turn_id"] for t in failed["turns"]] == ["evidence_gather", "verification"]
    assert failed["turns"][1]["gate"]["outcome"] == "fail"
    assert "NO_VERIFIED_CLAIMS" in failed["turns"][1]["gate"]["reasons"]
    # Each reason is a finding: the rule it breaks and where to look (claim ids, the field).
    findings = failed["turns"][1]["gate"]["findings"]
    assert len(findings) == len(failed["turns"][1]["gate"]["reasons"])
    by_code = {}
    for finding in findings:
        by_code.setdefault(finding["code"], []).append((finding["rule_id"], finding["pointer"]))
    assert by_code["NO_VERIFIED_CLAIMS"] == [("min_verified_claims", "field:verified_claims")]
    assert by_code["UNCLASSIFIED_CLAIM"]
    assert all(
        rule == "claims.classified_once" and pointer.startswith("claim:")
        for rule, pointer in by_code["UNCLASSIFIED_CLAIM"]
    )

    healthy = _BreakingProvider("no-such-dir", "verification_report")
    resumed = resume_thread(settings, failed["thread_id"], provider=healthy)
    assert resumed.ok
    # Turn 1 had completed: resuming called the provider only from the failed turn on.
    assert [turn for _, turn in healthy.calls] == ["verification", "readme_struct", "style_refine"]
    after = thread_details(env, failed["thread_id"])
    assert [(t["turn_id"], t["attempt"], t["status"]) for t in after["turns"]] == [
        ("evidence_gather", 1, "completed"),
        ("verification", 1, "failed"),
        ("verification", 2, "completed"),
        ("readme_struct", 1, "completed"),
        ("style_refine", 1, "completed"),
    ]


def test_in_place_outputs_are_not_evidence_and_reruns_are_free(settings, tree):
    first = run_workflow(settings, WORKFLOW, tree, in_place=True)
    assert first.ok
    written = {t.path: Path(t.output_path) for t in first.threads}
    assert written["stationkit"] == tree / "stationkit" / "README.md"
    before = {path: readme.read_bytes() for path, readme in written.items()}

    again = run_workflow(settings, WORKFLOW, tree, in_place=True, overwrite=True)
    assert again.provider_calls == 0
    assert again.threads_reused == len(first.threads)
    assert {t.path: Path(t.output_path).read_bytes() for t in again.threads} == before

    # A hand-written README is real evidence: it changes the tree and its directory reruns.
    (tree / "docs" / "README.md").write_text("# Station docs\n\nHow the station is built and operated.\n")
    third = run_workflow(settings, WORKFLOW, tree, in_place=True)
    assert {t.path for t in third.threads if not t.reused} == {"docs", "."}
    docs = next(t for t in third.threads if t.path == "docs")
    assert docs.output_path is None  # the hand-written README.md is kept without --overwrite
    assert (tree / "docs" / "README.md").read_text().startswith("# Station docs")


def test_editing_a_prompt_gives_every_target_a_new_thread(settings, tree, tmp_path):
    import shutil

    from e2e_support import REPO_ROOT

    first = run_workflow(settings, WORKFLOW, tree)
    assert first.ok
    # A workspace layer with the same profile and one reworded prompt.
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "profiles", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    prompt = workspace / "assets" / "prompts" / "docs_writer" / "style_refine.md"
    prompt.write_text(prompt.read_text() + "\nKeep sentences short.\n")

    second = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert second.threads_reused == 0
    # Only the reworded turn asks the provider: the three before it ask what they asked before.
    assert second.provider_calls == len(second.threads)
    assert second.recorded_answers == 3 * len(second.threads)
    assert not {t.thread_id for t in first.threads} & {t.thread_id for t in second.threads}
    # The offline provider ignores prompt wording, so the READMEs themselves are unchanged.
    assert [t.final_artifact_id for t in second.threads] == [t.final_artifact_id for t in first.threads]
    # Back to the shipped prompt: the first threads are found again by their dedupe key.
    third = run_workflow(settings, WORKFLOW, tree)
    assert third.provider_calls == 0
