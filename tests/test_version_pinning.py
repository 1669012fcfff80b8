"""Version pinning: a thread records the profile it started with, and `wf resume` runs with it
even after the profile's files changed (through Dagster, real SQLite records and CAS)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, VerificationBreaker, copy_tree, isolated_settings

from wf_pipeline.compiler.launch.executors import reconstruct_profile_job
from wf_pipeline.errors import ProfileError, RunError
from wf_pipeline.profiles import load_profile_file
from wf_pipeline.profiles.render import template_from_text
from wf_pipeline.profiles.snapshot import load_profile_snapshot, profile_snapshot
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.pinning import read_pinned_profile
from wf_pipeline.service import resume_thread, run_workflow

WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["failure_policy"] = {"mode": "stop_on_gate_fail", "resume_from_failed_turn": True}
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


def _failed_thread(settings, tree, workspace):
    provider = VerificationBreaker(broken=True)
    (failed,) = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider).threads
    assert failed.status == "failed" and provider.calls == TURNS[:2]
    return failed, provider


def _edit_prompt(workspace: Path, turn: str) -> str:
    prompt = workspace / "assets" / "prompts" / "docs_writer" / f"{turn}.md"
    text = prompt.read_text(encoding="utf-8") + "\nBe brief.\n"
    prompt.write_text(text, encoding="utf-8")
    return template_from_text("edited", text).digest


# --- the snapshot ----------------------------------------------------------------------------


def test_a_snapshot_rebuilds_the_profile_without_files_and_names_no_machine_path(tmp_path):
    workspace = _workspace(tmp_path)
    loaded = load_profile_file(workspace / "profiles" / f"{WORKFLOW}.yaml", "workspace")
    data = profile_snapshot(loaded)
    assert str(tmp_path).encode() not in data
    shutil.rmtree(workspace)  # nothing is read from the layer
    rebuilt = load_profile_snapshot(data, "sha256:" + "0" * 64, code_version=loaded.code_version)
    assert rebuilt.profile == loaded.profile and rebuilt.code_version == loaded.code_version
    assert rebuilt.templates == loaded.templates and rebuilt.system_prompts == loaded.system_prompts
    assert rebuilt.source_path == Path(f"{WORKFLOW}.yaml") and rebuilt.layer == "workspace"
    assert profile_snapshot(rebuilt) == data


def test_a_snapshot_that_does_not_give_the_recorded_version_back_is_refused(tmp_path):
    loaded = load_profile_file(_workspace(tmp_path) / "profiles" / f"{WORKFLOW}.yaml", "workspace")
    with pytest.raises(ProfileError) as raised:
        load_profile_snapshot(
            profile_snapshot(loaded), "sha256:" + "1" * 64, code_version="1.0.0-000000000000"
        )
    assert raised.value.code == "PROFILE_SNAPSHOT_INVALID"
    assert raised.value.details["found"] == loaded.code_version
    with pytest.raises(ProfileError) as raised:
        load_profile_snapshot(b'{"schema": "other"}', "sha256:" + "1" * 64)
    assert raised.value.code == "PROFILE_SNAPSHOT_INVALID"


@pytest.mark.slow
def test_a_new_thread_records_its_version_and_snapshot(settings, tree, tmp_path):
    workspace = _workspace(tmp_path)
    failed, _ = _failed_thread(settings, tree, workspace)
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        loaded = env.catalog.get(WORKFLOW)
        thread = env.records.get_thread(failed.thread_id)
        assert (thread.profile_version, thread.code_version) == (loaded.profile.version, loaded.code_version)
        assert thread.profile_artifact_id is not None
        # The orphan sweep keeps it while the thread is recorded.
        assert thread.profile_artifact_id in env.records.referenced_artifact_ids()
        pinned = read_pinned_profile(env, thread)
    assert pinned.snapshot_id == thread.profile_artifact_id
    assert pinned.profile == loaded.profile and pinned.templates == loaded.templates


# --- resume --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_a_template_changed_runs_the_pinned_template(settings, tree, tmp_path):
    workspace = _workspace(tmp_path)
    failed, provider = _failed_thread(settings, tree, workspace)
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        before = env.records.get_thread(failed.thread_id)
        first = [r for r in env.records.turns_for_thread(failed.thread_id) if r.turn_id == "verification"]
        pinned = read_pinned_profile(env, before)
    pinned_digest = pinned.templates["verification"].digest
    edited_digest = _edit_prompt(workspace, "verification")
    assert edited_digest != pinned_digest

    provider.broken, provider.calls = False, []
    # The pinned template asks the very request recorded before: ask the provider again
    # rather than take the recorded (gate-failing) answer.
    fresh = settings.model_copy(update={"reuse_responses": False})
    resumed = resume_thread(
        fresh, failed.thread_id, workspace_dir=workspace, out_dir=tmp_path / "out", provider=provider
    )
    assert resumed.ok and [t.thread_id for t in resumed.threads] == [failed.thread_id], json.dumps(
        resumed.to_json()
    )
    assert provider.calls == TURNS[1:]
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        after = env.records.get_thread(failed.thread_id)
        current = env.catalog.get(WORKFLOW)
        records = env.records.turns_for_thread(failed.thread_id)
    assert current.code_version != before.code_version  # the files did change
    assert after.status == "completed"
    assert (after.code_version, after.profile_artifact_id, after.target_frame_id) == (
        before.code_version,
        before.profile_artifact_id,
        before.target_frame_id,
    )
    verification = [r for r in records if r.turn_id == "verification"]
    assert [r.attempt for r in verification] == [1, 2]
    resumed_attempt = verification[-1]
    assert resumed_attempt.request["template"] == pinned_digest
    # Same inputs, same pinned template: the rendered prompt is the one first recorded.
    assert resumed_attempt.request["prompt"] == first[0].request["prompt"]
    for record in records:
        if record.request is not None:
            assert record.request["template"] == pinned.templates[record.turn_id].digest


@pytest.mark.slow
def test_a_thread_recorded_before_pinning_is_still_stale_after_an_edit(settings, tree, tmp_path):
    workspace = _workspace(tmp_path)
    failed, provider = _failed_thread(settings, tree, workspace)
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        thread = env.records.get_thread(failed.thread_id)
        env.records.save_thread(
            thread.model_copy(
                update={"profile_version": None, "code_version": None, "profile_artifact_id": None}
            )
        )
    _edit_prompt(workspace, "verification")
    provider.broken, provider.calls = False, []
    with pytest.raises(RunError) as raised:
        resume_thread(settings, failed.thread_id, workspace_dir=workspace, provider=provider)
    assert raised.value.code == "RUN_THREAD_STALE"
    assert raised.value.details["thread_frame_id"] != raised.value.details["current_frame_id"]
    assert provider.calls == []


@pytest.mark.slow
def test_out_of_process_steps_rebuild_the_job_from_the_pinned_snapshot(settings, tree, tmp_path):
    workspace = _workspace(tmp_path)
    failed, _ = _failed_thread(settings, tree, workspace)
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        thread = env.records.get_thread(failed.thread_id)
        pinned = read_pinned_profile(env, thread)
    _edit_prompt(workspace, "verification")
    values = settings.launch_values()
    current_job = reconstruct_profile_job(WORKFLOW, str(workspace), "multiprocess", values)
    pinned_job = reconstruct_profile_job(
        WORKFLOW, str(workspace), "multiprocess", values, profile_artifact_id=thread.profile_artifact_id
    )

    def versions(job):
        return {
            key.path[-1]: job.asset_layer.get(key).code_version
            for key in job.asset_layer.executable_asset_keys
            if key.path[0] == WORKFLOW
        }

    expected = {turn.output_type: pinned.turn_code_version(turn.turn_id) for turn in pinned.profile.turns}
    assert versions(pinned_job) == expected
    assert versions(current_job)["verification_report"] != expected["verification_report"]


@pytest.mark.slow
def test_a_resume_with_one_process_per_step_runs_the_pinned_template(settings, tree, tmp_path):
    workspace = _workspace(tmp_path)
    failed, _ = _failed_thread(settings, tree, workspace)
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        pinned = read_pinned_profile(env, env.records.get_thread(failed.thread_id))
    _edit_prompt(workspace, "verification")
    # Steps in their own processes: each rebuilds the job and opens its runtime from settings.
    steps = settings.model_copy(
        update={"executor": "multiprocess", "provider": "offline", "reuse_responses": False}
    )
    resumed = resume_thread(steps, failed.thread_id, workspace_dir=workspace, out_dir=tmp_path / "out")
    assert resumed.ok, json.dumps(resumed.to_json())
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        records = env.records.turns_for_thread(failed.thread_id)
    resumed_turns = [r for r in records if r.turn_id != "evidence_gather"]
    assert {r.turn_id for r in resumed_turns} == set(TURNS[1:])
    for record in resumed_turns:
        assert record.request["template"] == pinned.templates[record.turn_id].digest
