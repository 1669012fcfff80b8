"""One turn of one thread, run directly (no Dagster): order, retries, limits, records, frames."""

from __future__ import annotations

import json

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.errors import ProviderError
from wf_pipeline.metadata.canonical import is_digest
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
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

    def make(provider):
        env = RuntimeEnv.open(settings, provider=provider)
        loaded = env.catalog.get(WORKFLOW)
        plan = plan_run(env, loaded, scan_tree(tree))
        (thread_plan,) = plan.threads
        return env, loaded, thread_plan

    return make


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


def test_stop_on_gate_fail_off_records_the_verdict_and_goes_on(setup):
    import dataclasses

    leaky = "# storage\n\n## Evidence map\n\n- c001\n"
    env, loaded, plan = setup(ScriptedProvider({"style_refine": [leaky]}))
    policy = loaded.profile.failure_policy.model_copy(update={"stop_on_gate_fail": False})
    lenient = dataclasses.replace(
        loaded, profile=loaded.profile.model_copy(update={"failure_policy": policy})
    )
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
