"""One turn of one thread, run directly (no Dagster): order, retries, limits, records, frames."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.errors import ProviderError
from wf_pipeline.metadata.canonical import canonical_json, derived_id, digest_text, is_digest
from wf_pipeline.profiles import Profile
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv, plan_run, prepare_resume, resume_seq, run_turn, run_turn_batch
from wf_pipeline.runtime.threads import unsettled_children
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


class ScriptedProvider:
    """The offline provider behind a script of failures, recording every request it sees."""

    provider_type = "offline"
    model = "offline-v1"

    def __init__(self, failures: dict[str, list[Exception | str]] | None = None) -> None:
        self._inner = create_provider("offline")
        self._failures = {turn: list(items) for turn, items in (failures or {}).items()}
        self.requests: list[ProviderRequest] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        script = self._failures.get(request.turn_id)
        if script:
            step = script.pop(0)
            if isinstance(step, Exception):
                raise step
            return ProviderResponse(text=step, provider_type="offline", model="offline-v1")
        return self._inner.complete(request)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")

    def make(provider, **sections):
        """The shipped profile, with ``sections`` (e.g. failure_policy={...}) validated in its place."""
        env = RuntimeEnv.open(settings, provider=provider)
        loaded = with_sections(env.catalog.get(WORKFLOW), **sections)
        plan = plan_run(env, loaded, scan_tree(tree))
        (thread_plan,) = plan.threads
        return env, loaded, thread_plan

    return make


def with_sections(loaded, **sections):
    """The loaded profile with some top-level sections replaced, through the schema's validation."""
    document = {**loaded.profile.model_dump(), **sections}
    return dataclasses.replace(loaded, profile=Profile.model_validate(document))


def _run_all(env, loaded, thread_plan):
    outputs = []
    for turn_id in TURNS:
        thread = env.records.get_thread(thread_plan.thread.thread_id)
        outputs.append(run_turn(env, loaded, thread, thread_plan.target, turn_id))
        if outputs[-1].status != "completed":
            break
    return outputs


def test_retry_reuses_the_same_input_snapshot(setup):
    transient = ProviderError("PROVIDER_TIMEOUT", "timed out", retryable=True)
    provider = ScriptedProvider({"verification": [transient]})
    env, loaded, plan = setup(provider)
    outputs = _run_all(env, loaded, plan)
    assert [o.status for o in outputs] == ["completed"] * 4

    attempts = [r for r in provider.requests if r.turn_id == "verification"]
    assert len(attempts) == 2
    assert attempts[0].user_prompt == attempts[1].user_prompt
    assert attempts[0].inputs == attempts[1].inputs

    records = [r for r in env.records.turns_for_thread(plan.thread.thread_id) if r.turn_id == "verification"]
    assert [(r.attempt, r.status, r.error_code) for r in records] == [
        (1, "failed", "PROVIDER_TIMEOUT"),
        (2, "completed", None),
    ]
    assert records[0].input_artifact_ids == records[1].input_artifact_ids
    assert all(r.provider_called for r in records)


def test_exhausted_retries_fail_the_thread_and_keep_completed_artifacts(setup):
    down = ProviderError("PROVIDER_CONNECTION_ERROR", "refused")
    env, loaded, plan = setup(ScriptedProvider({"readme_struct": [down, down, down]}))
    outputs = _run_all(env, loaded, plan)
    assert [o.status for o in outputs] == ["completed", "completed", "failed"]
    assert outputs[-1].error_code == "PROVIDER_CONNECTION_ERROR"
    thread = env.records.get_thread(plan.thread.thread_id)
    assert thread.status == "failed" and thread.last_turn_seq == 3
    # retry_limit 1: two attempts, both recorded; the completed turns' outputs stay readable.
    failed = [r for r in env.records.turns_for_thread(thread.thread_id) if r.turn_id == "readme_struct"]
    assert [r.attempt for r in failed] == [1, 2]
    for output in outputs[:2]:
        assert env.cas.get(output.artifact_id)


def test_output_over_the_byte_limit_is_a_failed_attempt(setup):
    huge = json.dumps({"claims": [], "padding": "x" * 300_000})
    env, loaded, plan = setup(ScriptedProvider({"evidence_gather": [huge, huge]}))
    outputs = _run_all(env, loaded, plan)
    assert outputs[0].status == "failed"
    assert outputs[0].error_code == "RUN_OUTPUT_TOO_LARGE"
    assert outputs[0].artifact_id is None


def test_non_json_output_for_a_json_turn_is_a_shape_error(setup):
    env, loaded, plan = setup(ScriptedProvider({"evidence_gather": ["here are the claims: none", "[]"]}))
    (output,) = _run_all(env, loaded, plan)
    records = env.records.turns_for_thread(plan.thread.thread_id)
    assert [r.error_code for r in records] == ["RUN_OUTPUT_SHAPE", "RUN_OUTPUT_SHAPE"]
    assert output.status == "failed"


def test_completed_turns_are_reused_without_provider_calls(setup):
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    first = _run_all(env, loaded, plan)
    calls = len(provider.requests)
    again = _run_all(env, loaded, plan)
    assert len(provider.requests) == calls == 4
    assert all(o.reused for o in again)
    assert [o.artifact_id for o in again] == [o.artifact_id for o in first]


def test_records_and_frame_carry_ids_and_digests_only(setup):
    env, loaded, plan = setup(ScriptedProvider())
    outputs = _run_all(env, loaded, plan)
    thread_id = plan.thread.thread_id
    assert env.records.get_thread(thread_id).status == "completed"

    links = env.records.prompt_links_for_thread(thread_id)
    assert [link.turn_id for link in links] == TURNS
    context_ids = {link.context_artifact_id for link in links if link.context_artifact_id}
    assert len(context_ids) == 1  # one context snapshot for the whole thread

    frame = env.records.head_frame(plan.node_id, "readme")
    assert frame is not None and frame.artifact_id == outputs[-1].artifact_id
    assert set(frame.metadata) == {
        "agent_id",
        "provider",
        "model",
        "provider_type",
        "prompt_digest",
        "context_digest",
        "prompt_link_id",
    }
    assert is_digest(frame.metadata["prompt_digest"]) and frame.metadata["context_digest"] in context_ids
    assert frame.metadata["prompt_link_id"] == links[-1].prompt_link_id

    roles = {(link.turn_id, link.role) for link in env.records.artifact_links_for_thread(thread_id)}
    assert ("evidence_gather", "context") in roles and ("style_refine", "output") in roles
    assert ("verification", "rendered_prompt") in roles and ("verification", "system_prompt") in roles
    # Every artifact a record names is in the CAS and hashes to its id.
    for artifact_id in env.records.referenced_artifact_ids():
        env.cas.get(artifact_id)


def test_a_non_retryable_provider_error_is_not_retried(setup):
    refused = ProviderError("PROVIDER_HTTP_ERROR", "401 unauthorized", status=401, retryable=False)
    provider = ScriptedProvider({"evidence_gather": [refused, refused]})
    env, loaded, plan = setup(provider)
    (output,) = _run_all(env, loaded, plan)
    assert output.error_code == "PROVIDER_HTTP_ERROR"
    assert len(provider.requests) == 1


def test_artifact_links_record_real_sizes(setup):
    env, loaded, plan = setup(ScriptedProvider())
    _run_all(env, loaded, plan)
    for link in env.records.artifact_links_for_thread(plan.thread.thread_id):
        assert link.size == len(env.cas.get(link.artifact_id)), (link.turn_id, link.role)


@pytest.mark.parametrize("policy", [{"stop_on_gate_fail": False}, {"mode": "continue"}])
def test_stop_on_gate_fail_off_records_the_verdict_and_goes_on(setup, policy):
    leaky = "# storage\n\n## Evidence map\n\n- c001\n"
    # The older boolean spelling and the mode it stands for behave the same.
    env, lenient, plan = setup(ScriptedProvider({"style_refine": [leaky]}), failure_policy=policy)
    assert lenient.profile.failure_policy.mode == "continue"
    outputs = _run_all(env, lenient, plan)
    assert [o.status for o in outputs] == ["completed"] * 4
    assert outputs[-1].gate_outcome == "fail"
    assert any(r.startswith("EVIDENCE_HEADING_PRESENT") for r in outputs[-1].gate_reasons)
    assert env.records.get_thread(plan.thread.thread_id).status == "completed"
    frame = env.records.head_frame(plan.node_id, "readme")
    assert frame is not None and frame.artifact_id == outputs[-1].artifact_id


def test_the_shipped_profile_stops_on_the_same_failing_verdict(setup):
    leaky = "# storage\n\n## Evidence map\n\n- c001\n"
    env, loaded, plan = setup(ScriptedProvider({"style_refine": [leaky]}))
    assert _run_all(env, loaded, plan)[-1].status == "failed"
    assert env.records.get_thread(plan.thread.thread_id).status == "failed"
    assert env.records.head_frame(plan.node_id, "readme") is None


# --- profile fields the runtime honours ------------------------------------------------


def test_thread_identity_is_the_dedupe_key_plus_tree_provider_and_children(setup, tmp_path):
    env, loaded, plan = setup(ScriptedProvider())
    assert loaded.profile.thread_policy.dedupe_key_fields == [
        "workflow_id",
        "target_node_id",
        "target_frame_id",
    ]
    frame_id = f"readme@{loaded.code_version}"
    assert plan.thread.target_frame_id == frame_id
    keyed = derived_id("thread", WORKFLOW, plan.node_id, frame_id)
    tree_id = hashlib.sha256(str((tmp_path / "storage").resolve()).encode()).hexdigest()
    no_children = hashlib.sha256(canonical_json([])).hexdigest()
    assert plan.thread.thread_id == derived_id(
        "thread", keyed, f"tree={tree_id}", "provider=offline:offline-v1", f"children={no_children}"
    )


def test_copies_of_a_tree_never_share_a_thread_whatever_the_dedupe_key(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    first = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    second = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage_copy")
    env = RuntimeEnv.open(settings, provider=ScriptedProvider())
    shipped = env.catalog.get(WORKFLOW)
    by_key = with_sections(
        shipped,
        thread_policy={
            "dedupe_key_fields": ["workflow_id", "target_node_id", "target_frame_id", "target_key"]
        },
    )
    done = {}
    for loaded in (shipped, by_key):
        (done[loaded.profile.thread_policy.dedupe_key_fields[-1]],) = plan_run(
            env, loaded, scan_tree(first)
        ).threads
        _run_all(env, loaded, done[loaded.profile.thread_policy.dedupe_key_fields[-1]])
    (shipped_copy,) = plan_run(env, shipped, scan_tree(second)).threads
    (keyed_copy,) = plan_run(env, by_key, scan_tree(second)).threads
    # Same content, same relative paths: the same node id under both roots...
    assert shipped_copy.node_id == keyed_copy.node_id == done["target_key"].node_id
    # ...but another tree: neither key reuses the finished threads of the first copy.
    for copy in (shipped_copy, keyed_copy):
        assert not copy.reusable and copy.thread.status == "pending"
        assert copy.thread.thread_id not in {entry.thread.thread_id for entry in done.values()}
        assert copy.thread.target_key.startswith("storage_copy~")
    assert shipped_copy.thread.thread_id != keyed_copy.thread.thread_id


def test_children_are_found_under_the_profiles_dedupe_key(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    env = RuntimeEnv.open(settings, provider=ScriptedProvider())
    loaded = with_sections(
        env.catalog.get(WORKFLOW),
        thread_policy={"dedupe_key_fields": ["workflow_id", "target_node_id", "target_path"]},
    )
    scan = scan_tree(tree)
    plan = plan_run(env, loaded, scan)
    children = [entry for entry in plan.threads if entry.target.path != "."]
    assert children and unsettled_children(env, loaded, scan, ".")
    for entry in children:
        _run_all(env, loaded, entry)
    assert unsettled_children(env, loaded, scan, ".") == []


def test_store_prompt_render_off_keeps_no_rendered_prompt(setup):
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider, artifact_policy={"store_prompt_render": False})
    outputs = _run_all(env, loaded, plan)
    assert [o.status for o in outputs] == ["completed"] * 4
    thread_id = plan.thread.thread_id
    roles = {link.role for link in env.records.artifact_links_for_thread(thread_id)}
    assert roles == {"prompt_template", "context", "input", "output"}
    for link in env.records.prompt_links_for_thread(thread_id):
        assert link.rendered_prompt_artifact_id is None and link.system_prompt_artifact_id is None
        assert link.user_prompt_template_artifact_id is not None
        assert (link.context_artifact_id is not None) is (
            "context" in loaded.profile.turn(link.turn_id).input_refs
        )
    for request in provider.requests:
        assert not env.cas.exists(digest_text(request.user_prompt))
        assert not env.cas.exists(digest_text(request.system_prompt))
    # The frame still identifies the prompt by its digest.
    assert is_digest(env.records.head_frame(plan.node_id, "readme").metadata["prompt_digest"])


def test_store_prompt_render_on_keeps_both_rendered_prompts(setup):
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    _run_all(env, loaded, plan)
    for request in provider.requests:
        assert env.cas.exists(digest_text(request.user_prompt))
        assert env.cas.exists(digest_text(request.system_prompt))


def test_max_output_bytes_is_the_profiles_limit(setup):
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider, artifact_policy={"max_output_bytes": 64})
    (output,) = _run_all(env, loaded, plan)
    assert (output.status, output.error_code, output.artifact_id) == ("failed", "RUN_OUTPUT_TOO_LARGE", None)
    records = env.records.turns_for_thread(plan.thread.thread_id)
    assert [(r.attempt, r.error_code) for r in records] == [
        (1, "RUN_OUTPUT_TOO_LARGE"),
        (2, "RUN_OUTPUT_TOO_LARGE"),
    ]
    assert "limit 64" in records[0].error_text


def _fail_at_readme_struct(setup, **sections):
    down = ProviderError("PROVIDER_CONNECTION_ERROR", "refused")
    provider = ScriptedProvider({"readme_struct": [down, down]})
    env, loaded, plan = setup(provider, **sections)
    assert [o.status for o in _run_all(env, loaded, plan)] == ["completed", "completed", "failed"]
    return env, loaded, plan, provider


def test_resume_from_the_failed_turn_reuses_completed_turns(setup):
    env, loaded, plan, provider = _fail_at_readme_struct(setup)
    thread = env.records.get_thread(plan.thread.thread_id)
    assert resume_seq(loaded, thread, env.records.latest_turns(thread.thread_id)) == 3
    assert prepare_resume(env, loaded, thread) == thread  # nothing moves back
    before = len(provider.requests)
    outputs = _run_all(env, loaded, plan)
    assert [o.reused for o in outputs] == [True, True, False, False]
    assert [r.turn_id for r in provider.requests[before:]] == ["readme_struct", "style_refine"]
    assert env.records.get_thread(thread.thread_id).status == "completed"


def test_resume_from_the_first_turn_runs_every_turn_again(setup):
    env, loaded, plan, provider = _fail_at_readme_struct(
        setup, failure_policy={"resume_from_failed_turn": False}
    )
    thread = env.records.get_thread(plan.thread.thread_id)
    earlier = {r.turn_id: r for r in env.records.latest_turns(thread.thread_id).values()}
    assert resume_seq(loaded, thread, earlier) == 1
    rewound = prepare_resume(env, loaded, thread)
    assert (rewound.status, rewound.last_turn_seq) == ("pending", 0)
    assert env.records.get_thread(thread.thread_id) == rewound
    before = len(provider.requests)
    outputs = _run_all(env, loaded, plan)
    assert [o.status for o in outputs] == ["completed"] * 4
    assert not any(o.reused for o in outputs)
    # The first two turns ask what they asked before: their recorded answers are taken.
    assert [r.turn_id for r in provider.requests[before:]] == ["readme_struct", "style_refine"]
    assert [o.provider_calls for o in outputs] == [0, 0, 1, 1]
    latest = env.records.latest_turns(thread.thread_id)
    assert [latest[t].response_source for t in TURNS] == ["recorded", "recorded", "provider", "provider"]
    for turn_id in ("evidence_gather", "verification"):
        assert latest[turn_id].response_artifact_id == earlier[turn_id].response_artifact_id
        assert latest[turn_id].output_artifact_id == earlier[turn_id].output_artifact_id
        assert latest[turn_id].provider_called is False
    # New attempts; the earlier ones stay recorded and their outputs stay in the CAS.
    assert [o.attempt for o in outputs] == [2, 2, 3, 1]
    for turn_id in ("evidence_gather", "verification"):
        assert env.cas.exists(earlier[turn_id].output_artifact_id)
    # The same context snapshot: the restarted turns see the inputs the first ones saw.
    assert outputs[0].input_artifact_ids == earlier["evidence_gather"].input_artifact_ids
    final = env.records.get_thread(thread.thread_id)
    assert (final.status, final.last_turn_seq) == ("completed", 4)


def test_resume_of_a_completed_thread_changes_nothing(setup):
    env, loaded, plan = setup(ScriptedProvider(), failure_policy={"resume_from_failed_turn": False})
    _run_all(env, loaded, plan)
    thread = env.records.get_thread(plan.thread.thread_id)
    assert resume_seq(loaded, thread, env.records.latest_turns(thread.thread_id)) is None
    assert prepare_resume(env, loaded, thread) == thread


def test_a_turn_run_again_for_a_lost_output_does_not_unsettle_later_turns(setup):
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    first = _run_all(env, loaded, plan)
    env.cas.delete(first[0].artifact_id)
    again = _run_all(env, loaded, plan)
    assert [o.reused for o in again] == [False, True, True, True]
    assert env.records.get_thread(plan.thread.thread_id).last_turn_seq == 4


def test_a_turn_over_a_budget_fails_its_thread_with_the_budget_and_size(setup, caplog):
    """The batch goes on without the thread; the thread ends failed, saying which budget and by how much."""
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    # The profile's context budget, too small for even the names of the directory's files.
    policy = loaded.profile.artifact_policy.model_copy(update={"max_context_bytes": 64})
    loaded = dataclasses.replace(
        loaded, profile=loaded.profile.model_copy(update={"artifact_policy": policy})
    )
    with caplog.at_level("WARNING", logger="wf_pipeline.runtime.batch"):
        (output,) = run_turn_batch(env, loaded, "evidence_gather", [plan.target]).values()
    assert output.status == "failed" and output.error_code == "METADATA_BUDGET_EXCEEDED"
    assert provider.requests == []
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code) == ("failed", "METADATA_BUDGET_EXCEEDED")
    assert "max_context_bytes 64" in thread.error_text
    (message,) = [
        record.getMessage() for record in caplog.records if "METADATA_BUDGET_EXCEEDED" in record.getMessage()
    ]
    assert "METADATA_BUDGET_EXCEEDED" in message and "max_context_bytes 64" in message


def test_a_storage_error_fails_the_thread_and_a_later_success_clears_it(setup):
    """A CAS that cannot write ends the thread failed with the CAS code, never running."""
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    (first,) = run_turn_batch(env, loaded, "evidence_gather", [plan.target]).values()
    assert first.status == "completed"
    assert env.records.get_thread(plan.thread.thread_id).status == "running"
    # The store's staging folder becomes a file: every new object fails to write.
    staging = Path(env.settings.cas_url.removeprefix("file://")) / "tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.write_text("not a folder")

    (second,) = run_turn_batch(env, loaded, "verification", [plan.target]).values()

    assert (second.status, second.error_code) == ("failed", "CAS_BACKEND_ERROR")
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code) == ("failed", "CAS_BACKEND_ERROR")
    assert thread.error_text
    staging.unlink()
    (again,) = run_turn_batch(env, loaded, "verification", [plan.target]).values()
    assert again.status == "completed"
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code, thread.error_text) == ("running", None, None)


def test_a_failing_gate_fails_the_thread_with_the_gate_and_its_reasons(setup):
    provider = ScriptedProvider({"evidence_gather": [json.dumps({"claims": []})]})
    env, loaded, plan = setup(provider)
    outputs = _run_all(env, loaded, plan)
    assert outputs[-1].status == "failed"
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code) == ("failed", "GATE_FAILED")
    assert thread.error_text.startswith(f"gate {outputs[-1].gate_id} of turn {outputs[-1].turn_id} failed: ")


def test_under_the_strict_preset_a_failed_thread_keeps_its_code_and_only_a_digest_of_its_message(
    setup, caplog
):
    """strict hashes free text: the records and the log name the budget's code, never its message."""
    provider = ScriptedProvider()
    env, loaded, plan = setup(provider)
    policy = loaded.profile.artifact_policy.model_copy(update={"max_context_bytes": 64})
    update = {"artifact_policy": policy, "redaction": {"preset": "strict"}}
    loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update=update))
    assert loaded.redaction.hash_free_text
    with caplog.at_level("WARNING", logger="wf_pipeline.runtime.batch"):
        (output,) = run_turn_batch(env, loaded, "evidence_gather", [plan.target]).values()
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code) == ("failed", "METADATA_BUDGET_EXCEEDED")
    prefix = "message withheld (redaction strict): "
    assert thread.error_text.startswith(prefix) and is_digest(thread.error_text.removeprefix(prefix))
    assert output.error_text == thread.error_text
    assert "max_context_bytes" not in caplog.text and thread.error_text in caplog.text


def test_under_the_strict_preset_a_provider_failure_is_logged_by_code_and_digest_only(setup, caplog):
    """The runtime's warning of a failed attempt shows what the records keep: under strict, a digest."""
    down = ProviderError("PROVIDER_CONNECTION_ERROR", "refused by host-that-names-a-client.internal")
    env, loaded, plan = setup(ScriptedProvider({"evidence_gather": [down, down]}))
    loaded = dataclasses.replace(
        loaded, profile=loaded.profile.model_copy(update={"redaction": {"preset": "strict"}})
    )
    with caplog.at_level("WARNING", logger="wf_pipeline.runtime"):
        (output,) = run_turn_batch(env, loaded, "evidence_gather", [plan.target]).values()
    assert output.error_code == "PROVIDER_CONNECTION_ERROR"
    assert "host-that-names-a-client" not in caplog.text
    assert f"PROVIDER_CONNECTION_ERROR: {output.error_text} (turn evidence_gather" in caplog.text
    assert output.error_text.startswith("message withheld (redaction strict): sha256:")


def test_under_the_strict_preset_a_failed_gate_records_a_digest_of_its_reasons(setup):
    provider = ScriptedProvider({"evidence_gather": [json.dumps({"claims": []})]})
    env, loaded, plan = setup(provider)
    strict = loaded.profile.model_copy(update={"redaction": {"preset": "strict"}})
    loaded = dataclasses.replace(loaded, profile=strict)
    _run_all(env, loaded, plan)
    thread = env.records.get_thread(plan.thread.thread_id)
    assert (thread.status, thread.error_code) == ("failed", "GATE_FAILED")
    assert thread.error_text.startswith("message withheld (redaction strict): sha256:")
