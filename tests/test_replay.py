"""Replays: recorded answers by request digest, `wf replay --verify`, cheap re-runs after a template edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from e2e_support import isolated_settings, workspace_layer

from wf_pipeline.cli.main import main
from wf_pipeline.errors import REPLAY_RESPONSE_MISSING, ProviderError
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.providers.replay import ReplayAnswer, ReplayProvider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.requests import build_request, differing_fields, request_digest
from wf_pipeline.service import run_workflow
from wf_pipeline.service.replay import replay
from wf_pipeline.tree.synthetic import generate_tree

WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home").model_copy(update={"provider": "simulated"})


def _documented(settings, tmp_path: Path, directories: int) -> Path:
    tree = tmp_path / "tree"
    generate_tree(tree, directories=directories, fanout=4)
    summary = run_workflow(settings, WORKFLOW, tree)
    assert summary.ok and len(summary.threads) == directories
    return tree


def _live_state(settings) -> tuple:
    with RuntimeEnv.open(settings) as env:
        threads = env.records.list_threads(WORKFLOW)
        turns = sorted(t.turn_record_id for th in threads for t in env.records.turns_for_thread(th.thread_id))
        heads = sorted((f.node_id, f.frame_id) for f in env.records.head_frames())
        objects = sorted(env.cas.iter_artifact_ids())
        audit = len(env.records.audit_records())
    return threads, turns, heads, objects, audit


class VariantProvider:
    """The simulated provider's answers, but other bytes for one thread: a server that is not deterministic."""

    def __init__(self, thread_id: str) -> None:
        self._inner = create_provider("simulated")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self._thread_id = thread_id
        self.calls = 0

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        response = self._inner.complete(request)
        if request.thread_id != self._thread_id:
            return response
        text = (
            json.dumps(json.loads(response.text), indent=1)
            if request.output_format == "json"
            else response.text + "\n\nMore."
        )
        return ProviderResponse(text=text, provider_type=response.provider_type, model=response.model)


# --- the request record -------------------------------------------------------------


def test_the_request_digest_covers_prompts_inputs_and_provider_but_not_template_names():
    provider = create_provider("simulated")
    base = dict(
        output_type="readme_final",
        output_format="markdown",
        max_output_bytes=1000,
        system_prompt="sys",
        user_prompt="user",
        input_ids={"context": "sha256:" + "a" * 64},
        template_digest="sha256:" + "b" * 64,
        system_template_digest=None,
    )
    request = build_request(provider, **base)
    assert request_digest(request) == request_digest(build_request(provider, **base))
    # The template is kept to explain a change; its effect on the request is the rendered prompt.
    assert request_digest(request) == request_digest({**request, "template": "sha256:" + "c" * 64})
    for change in (
        {"user_prompt": "other"},
        {"system_prompt": "x"},
        {"input_ids": {"context": "sha256:" + "d" * 64}},
    ):
        other = build_request(provider, **{**base, **change})
        assert request_digest(other) != request_digest(request)
    offline = build_request(create_provider("offline"), **base)
    assert differing_fields(request, offline) == ["provider", "model"]
    moved = build_request(provider, **{**base, "user_prompt": "u2", "template_digest": "sha256:" + "e" * 64})
    assert differing_fields(request, moved) == ["template", "prompt"]


def test_the_replay_provider_gives_answers_back_in_order_then_reports_the_missing_digest():
    asked = []

    def answers(request):
        asked.append(request.request_digest)
        return [
            ReplayAnswer(text=None, error_code="PROVIDER_TIMEOUT", error_text="late"),
            ReplayAnswer(text="{}"),
        ]

    provider = ReplayProvider("simulated", "simulated-v1", answers)
    request = ProviderRequest(
        workflow_id=WORKFLOW,
        thread_id="thread:1",
        turn_id="verification",
        output_type="verification_report",
        output_format="json",
        system_prompt="",
        user_prompt="",
        inputs={},
        request_digest="sha256:" + "f" * 64,
    )
    with pytest.raises(ProviderError) as first:
        provider.complete(request)
    assert first.value.code == "PROVIDER_TIMEOUT" and first.value.retryable
    assert provider.complete(request).text == "{}"
    with pytest.raises(ProviderError) as missing:
        provider.complete(request)
    assert missing.value.code == REPLAY_RESPONSE_MISSING
    assert missing.value.details["turn_id"] == "verification"
    assert missing.value.details["request_digest"] == request.request_digest
    assert asked == [request.request_digest]  # looked up once per digest


# --- recorded responses -------------------------------------------------------------


class Fenced:
    """The simulated provider's answers inside a Markdown code fence, as chat models often reply."""

    def __init__(self) -> None:
        self._inner = create_provider("simulated")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        response = self._inner.complete(request)
        fence = "json" if request.output_format == "json" else "markdown"
        return ProviderResponse(f"```{fence}\n{response.text}\n```\n", response.provider_type, response.model)


def test_every_attempt_records_its_request_and_response(settings, tmp_path):
    _documented(settings, tmp_path, 3)
    with RuntimeEnv.open(settings) as env:
        for thread in env.records.list_threads(WORKFLOW):
            turns = env.records.turns_for_thread(thread.thread_id)
            assert [t.turn_id for t in turns] == TURNS
            roles = {link.role for link in env.records.artifact_links_for_thread(thread.thread_id)}
            for turn in turns:
                assert turn.request_digest == request_digest(turn.request)
                assert turn.response_source == "provider" and turn.provider_called
                assert turn.request["provider"] == "simulated"
                # The answer was the output byte for byte: one object, of the output's class.
                assert turn.response_artifact_id == turn.output_artifact_id
            assert "provider_response" not in roles


def test_an_answer_that_is_not_its_output_is_a_provider_response_artifact(settings, tmp_path):
    tree = tmp_path / "tree"
    generate_tree(tree, directories=1, fanout=4)
    assert run_workflow(settings, WORKFLOW, tree, provider=Fenced()).ok
    with RuntimeEnv.open(settings) as env:
        (thread,) = env.records.list_threads(WORKFLOW)
        links = env.records.artifact_links_for_thread(thread.thread_id)
        for turn in env.records.turns_for_thread(thread.thread_id):
            assert turn.response_artifact_id not in (None, turn.output_artifact_id)
            assert any(
                link.role == "provider_response"
                and link.turn_id == turn.turn_id
                and link.artifact_id == turn.response_artifact_id
                for link in links
            )
            raw = env.cas.get_text(turn.response_artifact_id, artifact_class="provider_response")
            assert raw.startswith("```")
    report = replay(settings, thread_id=thread.thread_id, verify=True)
    assert report.matched and report.provider_calls == 0


class FailsFirstCall:
    """The simulated provider, but the first call of each thread's verification turn fails (retryable)."""

    def __init__(self) -> None:
        self._inner = create_provider("simulated")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self._seen: set[str] = set()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        if request.turn_id == "verification" and request.thread_id not in self._seen:
            self._seen.add(request.thread_id)
            raise ProviderError("PROVIDER_SIMULATED_FAILURE", "first call fails")
        return self._inner.complete(request)


def test_failed_attempts_are_recorded_with_their_codes_and_replay_the_same_way(settings, tmp_path):
    tree = tmp_path / "tree"
    generate_tree(tree, directories=2, fanout=4)
    assert run_workflow(settings, WORKFLOW, tree, provider=FailsFirstCall()).ok
    with RuntimeEnv.open(settings) as env:
        thread = env.records.list_threads(WORKFLOW)[0]
        attempts = [t for t in env.records.turns_for_thread(thread.thread_id) if t.turn_id == "verification"]
    assert [(t.status, t.error_code) for t in attempts] == [
        ("failed", "PROVIDER_SIMULATED_FAILURE"),
        ("completed", None),
    ]
    assert attempts[0].response_artifact_id is None and attempts[0].provider_called
    assert attempts[0].request_digest == attempts[1].request_digest
    report = replay(settings, thread_id=thread.thread_id, verify=True)
    assert report.matched, [d.to_json() for t in report.threads for d in t.divergences]
    assert report.provider_calls == 0
    replayed = report.threads[0].turns["verification"]
    assert [(t.status, t.error_code, t.response_source) for t in replayed] == [
        ("failed", "PROVIDER_SIMULATED_FAILURE", "replay"),
        ("completed", None, "replay"),
    ]


# --- wf replay ------------------------------------------------------------------------


@pytest.mark.slow
def test_replaying_a_40_directory_tree_makes_no_call_and_every_digest_is_equal(settings, tmp_path, capsys):
    tree = _documented(settings, tmp_path, 40)
    before = _live_state(settings)
    status = main(["replay", "--tree", str(tree), "--verify", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    counts = report["counts"]
    assert counts["threads"] == 40 and counts["divergences"] == 0 and counts["provider_calls"] == 0
    with RuntimeEnv.open(settings) as env:
        for entry in report["threads"]:
            recorded = env.records.latest_turns(entry["thread_id"])
            assert [t["turn_id"] for t in entry["turns"]] == TURNS
            for digests in entry["turns"]:
                turn_id = digests["turn_id"]
                assert digests["request"] == recorded[turn_id].request_digest
                assert digests["response"] == recorded[turn_id].response_artifact_id
                assert digests["output"] == recorded[turn_id].output_artifact_id
    # The live records, heads, artifacts and audit trail are as they were.
    assert _live_state(settings) == before


def test_a_provider_that_answers_one_directory_differently_is_reported_there_only(settings, tmp_path):
    tree = _documented(settings, tmp_path, 6)
    with RuntimeEnv.open(settings) as env:
        threads = {t.target_path: t for t in env.records.list_threads(WORKFLOW)}
    odd = next(path for path in threads if path.count("/") == 1)  # a directory with a parent
    provider = VariantProvider(threads[odd].thread_id)
    report = replay(settings, tree=tree, verify=True, provider=provider)
    assert not report.matched
    divergent = {t.target_path for t in report.threads if t.divergences}
    assert divergent == {odd}
    (thread,) = [t for t in report.threads if t.target_path == odd]
    classes = {(d.turn_id, d.artifact_class) for d in thread.divergences}
    assert ("evidence_gather", "provider_response") in classes
    first = next(d for d in thread.divergences if d.turn_id == "evidence_gather")
    assert first.first_difference.input == "response"
    assert first.expected is not None and first.actual is not None and first.expected != first.actual
    # The next turn reads the changed output: its first differing input says so.
    later = next(d for d in thread.divergences if d.turn_id == "verification")
    assert later.first_difference.input == "inputs.evidence_map"
    assert provider.calls == 4 * 6


def test_wf_replay_of_one_thread_exits_1_and_names_a_changed_file(settings, tmp_path, capsys):
    tree = _documented(settings, tmp_path, 3)
    with RuntimeEnv.open(settings) as env:
        thread = next(t for t in env.records.list_threads(WORKFLOW) if t.target_path != ".")
    module = next(p for p in (tree / thread.target_path).iterdir() if p.is_file() and p.suffix == ".py")
    module.write_text(module.read_text() + "\n\ndef added():\n    return 1\n")
    status = main(["replay", thread.thread_id, "--verify", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1
    (entry,) = report["threads"]
    context = next(d for d in entry["divergences"] if d["artifact_class"] == "context_payload")
    assert context["turn_id"] == "evidence_gather"
    why = context["first_difference"]
    assert why["input"] == "inputs.context"
    assert f"file {module.relative_to(tree).as_posix()} changed" in why["detail"]
    assert entry["error_code"] == REPLAY_RESPONSE_MISSING


def test_wf_replay_refuses_an_unknown_thread_and_an_undocumented_tree(settings, tmp_path, capsys):
    assert main(["replay", "thread:000000000000000000000000"]) == 1
    assert "RUN_UNKNOWN_THREAD" in capsys.readouterr().err
    tree = tmp_path / "fresh"
    generate_tree(tree, directories=2, fanout=4)
    assert main(["replay", "--tree", str(tree)]) == 1
    assert "REPLAY_NOTHING_RECORDED" in capsys.readouterr().err


# --- cheap re-runs ----------------------------------------------------------------------


def _workspace_with_edited_template(tmp_path: Path) -> Path:
    workspace = workspace_layer(tmp_path)
    template = workspace / "assets" / "prompts" / "docs_writer" / "style_refine.md"
    template.write_text(template.read_text() + "\nKeep every sentence short.\n")
    return workspace


@pytest.mark.parametrize("reuse", [True, False])
def test_after_the_last_template_changes_only_the_last_turn_calls_the_provider(settings, tmp_path, reuse):
    tree = _documented(settings, tmp_path, 5)
    with RuntimeEnv.open(settings) as env:
        old = {
            t.target_path: env.records.latest_turns(t.thread_id) for t in env.records.list_threads(WORKFLOW)
        }
    workspace = _workspace_with_edited_template(tmp_path)
    rerun = settings.model_copy(update={"reuse_responses": reuse})
    summary = run_workflow(rerun, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok
    assert summary.to_json()["provider_calls"] == (5 if reuse else 20)
    assert summary.recorded_answers == (15 if reuse else 0)
    with RuntimeEnv.open(settings) as env:
        new = {}
        for thread in env.records.list_threads(WORKFLOW):
            if thread.thread_id not in {t.thread_id for turns in old.values() for t in turns.values()}:
                new[thread.target_path] = env.records.latest_turns(thread.thread_id)
    assert set(new) == set(old)
    for path, turns in new.items():
        for turn_id in TURNS[:3]:
            assert turns[turn_id].output_artifact_id == old[path][turn_id].output_artifact_id
            assert turns[turn_id].request_digest == old[path][turn_id].request_digest
            assert turns[turn_id].response_source == ("recorded" if reuse else "provider")
        last = turns["style_refine"]
        assert last.response_source == "provider" and last.provider_called
        assert last.request_digest != old[path]["style_refine"].request_digest
        assert last.request["template"] != old[path]["style_refine"].request["template"]


# --- the replay job in Dagster ---------------------------------------------------------


def test_the_replay_job_checks_each_partition_and_reports_divergences(settings, tmp_path):
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from wf_pipeline.compiler import build_definitions, open_instance
    from wf_pipeline.compiler.replay import REPLAY_CHECK, replay_asset_key, replay_job_name
    from wf_pipeline.service import sync_targets

    tree = _documented(settings, tmp_path, 3)
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    with RuntimeEnv.open(settings) as env:
        changed = next(t for t in env.records.list_threads(WORKFLOW) if t.target_path != ".")
        module = next(p for p in (tree / changed.target_path).iterdir() if p.suffix == ".py")
        module.write_text(module.read_text() + "\n\ndef added():\n    return 1\n")
        defs = build_definitions(env.catalog, env)
        job = defs.resolve_job_def(replay_job_name(WORKFLOW))
        instance = open_instance(settings)
        tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert result.success
    evaluations = {e.partition: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(keys)
    assert {e.check_name for e in evaluations.values()} == {REPLAY_CHECK}
    by_path = {key: path for key, path in zip(keys, _paths_of(keys), strict=True)}
    for key, evaluation in evaluations.items():
        metadata = evaluation.metadata
        # The directory whose file changed diverges, and so does every directory above it
        # (their node ids change); the others replay equal.
        path = by_path[key]
        above = path == "." or changed.target_path.startswith(path + "/")
        assert evaluation.passed == (path != changed.target_path and not above), key
        assert metadata["provider_calls"].value == 0
        if not evaluation.passed:
            divergences = metadata["divergence_list"].value
            assert divergences and divergences[0]["first_difference"]["input"] == "inputs.context"
    materialized = instance.get_materialized_partitions(replay_asset_key(WORKFLOW))
    assert materialized == set(keys)


def test_the_bottom_up_sensor_leaves_a_replay_launched_from_the_asset_graph_alone(settings, tmp_path):
    from dagster import DagsterEventType, SkipReason, build_run_status_sensor_context
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from wf_pipeline.compiler import build_definitions, open_instance
    from wf_pipeline.compiler.replay import replay_asset_key
    from wf_pipeline.service import sync_targets

    tree = _documented(settings, tmp_path, 3)
    keys = sync_targets(settings, WORKFLOW, tree)["targets"]
    with RuntimeEnv.open(settings) as env:
        # A leaf changed since: work the sensor would continue with after a documenting run.
        leaf = next(t for t in env.records.list_threads(WORKFLOW) if t.target_path != ".")
        module = next(p for p in (tree / leaf.target_path).iterdir() if p.suffix == ".py")
        module.write_text(module.read_text() + "\n\ndef added():\n    return 1\n")
        defs = build_definitions(env.catalog, env)
        sensor = next(s for s in defs.sensors if s.name == f"{WORKFLOW}_bottom_up")
        instance = open_instance(settings)
        # What a backfill of the replay asset from the UI runs: Dagster's implicit asset job
        # with that asset alone selected.
        key = replay_asset_key(WORKFLOW)
        tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[key], tags=tags, raise_on_error=False
        )
        assert result.success
        before = _live_state(settings)
        run = instance.get_run_by_id(result.run_id)
        assert run.asset_selection == {key}
        (success,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_SUCCESS)
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=success.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
        )
        verdict = sensor(context)
    assert isinstance(verdict, SkipReason) and "replay" in verdict.skip_message, verdict
    assert _live_state(settings) == before


def _paths_of(keys: list[str]) -> list[str]:
    from urllib.parse import unquote

    return ["." if "/" not in key else unquote(key.split("/", 1)[1]) for key in keys]


def test_a_changed_template_is_the_first_difference_unless_the_thread_replays_its_pinned_profile(
    settings, tmp_path
):
    _documented(settings, tmp_path, 2)
    workspace = _workspace_with_edited_template(tmp_path)
    with RuntimeEnv.open(settings) as env:
        thread = env.records.list_threads(WORKFLOW)[0]
    current = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace)
    (replayed,) = current.threads
    assert not replayed.matched and replayed.error_code == REPLAY_RESPONSE_MISSING
    assert {d.turn_id for d in replayed.divergences} == {"style_refine"}, [
        (d.artifact_class, d.first_difference) for d in replayed.divergences
    ][:4]
    prompt = next(d for d in replayed.divergences if d.artifact_class == "prompt_render")
    assert prompt.first_difference.input == "template"
    assert prompt.first_difference.expected != prompt.first_difference.actual
    pinned = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace, pinned=True)
    assert pinned.matched and pinned.provider_calls == 0


# --- what review found: resumed, running, gone and unreadable ----------------------------


class FailsOnce:
    """The simulated provider, but verification's first call fails for good (not retryable)."""

    def __init__(self) -> None:
        self._inner = create_provider("simulated")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self.failed = False

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        if request.turn_id == "verification" and not self.failed:
            self.failed = True
            raise ProviderError("PROVIDER_HTTP_ERROR", "refused once")
        return self._inner.complete(request)


def test_a_resumed_thread_replays_its_attempts_across_both_invocations(settings, tmp_path):
    from wf_pipeline.service import resume_thread

    tree = tmp_path / "tree"
    generate_tree(tree, directories=1, fanout=4)
    provider = FailsOnce()
    (failed,) = run_workflow(settings, WORKFLOW, tree, provider=provider).threads
    assert failed.status == "failed"
    assert resume_thread(settings, failed.thread_id, provider=provider).ok
    report = replay(settings, thread_id=failed.thread_id, verify=True)
    assert report.matched, [d.to_json() for t in report.threads for d in t.divergences]
    outcomes = [(t.status, t.error_code) for t in report.threads[0].turns["verification"]]
    assert outcomes == [("failed", "PROVIDER_HTTP_ERROR"), ("completed", None)]


def test_a_tree_replay_skips_unfinished_threads_and_reports_gone_directories(settings, tmp_path, capsys):
    tree = _documented(settings, tmp_path, 5)
    with RuntimeEnv.open(settings) as env:
        threads = {t.target_path: t for t in env.records.list_threads(WORKFLOW)}
        leaves = sorted(p for p in threads if p != ".")
        running = threads[leaves[0]].model_copy(update={"status": "running"})
        env.records.save_thread(running)
    shutil.rmtree(tree / leaves[1])
    status = main(["replay", "--tree", str(tree), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert leaves[0] in report["unrecorded"]
    assert leaves[0] not in {t["target_path"] for t in report["threads"]}
    by_path = {t["target_path"]: t for t in report["threads"]}
    # Unverified, a replay that cannot complete still fails: the root's context lost a child.
    assert status == 1 and by_path["."]["error_code"] == REPLAY_RESPONSE_MISSING
    assert all(t["status"] == "completed" for path, t in by_path.items() if path != ".")
    status = main(["replay", "--tree", str(tree), "--verify", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and not report["matched"]
    assert report["gone"] == [{"target_path": leaves[1], "thread_id": threads[leaves[1]].thread_id}]


def test_a_deleted_tree_fails_its_own_partitions_only(settings, tmp_path):
    from wf_pipeline.runtime.replay import replay_targets
    from wf_pipeline.service import sync_targets

    kept = _documented(settings, tmp_path, 2)
    other = tmp_path / "other"
    generate_tree(other, directories=2, fanout=4)
    assert run_workflow(settings, WORKFLOW, other).ok
    keys = (
        sync_targets(settings, WORKFLOW, kept)["targets"] + sync_targets(settings, WORKFLOW, other)["targets"]
    )
    shutil.rmtree(other)
    with RuntimeEnv.open(settings) as env:
        from wf_pipeline.runtime import resolve_target

        targets = [resolve_target(env.records, key) for key in keys]
        replays = replay_targets(env, env.catalog.get(WORKFLOW), targets)
    for target in targets:
        replayed = replays[target.key]
        if target.root == other:
            assert replayed.error_code == "TREE_PATH_MISSING" and not replayed.matched
        else:
            assert replayed.matched


def test_causes_name_the_template_file_the_gate_rules_and_an_unreadable_response(settings, tmp_path):
    _documented(settings, tmp_path, 1)
    with RuntimeEnv.open(settings) as env:
        (thread,) = env.records.list_threads(WORKFLOW)
        latest = env.records.latest_turns(thread.thread_id)
        env.cas.delete(latest["readme_struct"].response_artifact_id)
    workspace = _workspace_with_edited_template(tmp_path)
    profile = workspace / "profiles" / f"{WORKFLOW}.yaml"
    text = profile.read_text()
    # The family base sets max_drift 0.15 for docs_readme_final gates; the gate's own rules win.
    final = "    gate_type: docs_readme_final\n"
    assert final in text
    profile.write_text(text.replace(final, final + "    rules:\n      max_drift: 0.0\n"))
    (replayed,) = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace).threads
    by_class = {(d.turn_id, d.artifact_class): d for d in replayed.divergences}
    missing = by_class[("readme_struct", "provider_response")].first_difference
    assert missing.input == "response" and "unreadable (CAS_NOT_FOUND)" in missing.detail
    assert replayed.error_code == REPLAY_RESPONSE_MISSING


def test_a_changed_threshold_is_the_cause_of_a_changed_verdict(settings, tmp_path):
    _documented(settings, tmp_path, 1)
    workspace = workspace_layer(tmp_path, "strict")
    text = (workspace / "profiles" / f"{WORKFLOW}.yaml").read_text()
    strict = text.replace(
        "    required_fields: [verified_claims]\n",
        "    required_fields: [verified_claims]\n    rules:\n      min_verified_claims: 1000\n",
    )
    assert strict != text
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(strict)
    with RuntimeEnv.open(settings) as env:
        (thread,) = env.records.list_threads(WORKFLOW)
    (replayed,) = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace).threads
    gate = next(d for d in replayed.divergences if d.artifact_class == "gate")
    assert gate.turn_id == "verification" and gate.first_difference.input == "gate_rules"
    outcome = next(d for d in replayed.divergences if d.artifact_class == "attempts")
    assert outcome.first_difference.input == "gate_rules"


def test_the_template_cause_names_the_template_file(settings, tmp_path):
    _documented(settings, tmp_path, 1)
    workspace = _workspace_with_edited_template(tmp_path)
    with RuntimeEnv.open(settings) as env:
        (thread,) = env.records.list_threads(WORKFLOW)
    (replayed,) = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace).threads
    prompt = next(d for d in replayed.divergences if d.artifact_class == "prompt_render")
    assert prompt.first_difference.input == "template"
    assert "style_refine.md of turn style_refine" in prompt.first_difference.detail


def test_wf_provider_replay_is_refused_with_a_pointer_to_wf_replay(settings, tmp_path, capsys):
    from wf_pipeline.errors import PROVIDER_CONFIG_INVALID

    with pytest.raises(ProviderError) as refused:
        create_provider("replay")
    assert refused.value.code == PROVIDER_CONFIG_INVALID
    tree = _documented(settings, tmp_path, 1)
    assert main(["replay", "--tree", str(tree), "--provider", "replay", "--verify"]) == 0
    assert "every digest equal" in capsys.readouterr().out


def test_a_pinned_replay_of_a_thread_that_pinned_nothing_says_so(settings, tmp_path):
    from wf_pipeline.errors import REPLAY_NOTHING_RECORDED

    _documented(settings, tmp_path, 1)
    with RuntimeEnv.open(settings) as env:
        (thread,) = env.records.list_threads(WORKFLOW)
        env.records.save_thread(
            thread.model_copy(
                update={"profile_artifact_id": None, "code_version": None, "profile_version": None}
            )
        )
    (replayed,) = replay(settings, thread_id=thread.thread_id, verify=True, pinned=True).threads
    assert replayed.error_code == REPLAY_NOTHING_RECORDED and not replayed.matched
    assert "pinned no profile" in replayed.unreplayable
    assert replay(settings, thread_id=thread.thread_id, verify=True).matched
