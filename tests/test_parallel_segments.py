"""Parallel segments: independent turns of a thread run concurrently, as sibling assets.

The test profile is the docs writer's with one more turn, ``side_notes``, that reads only
the context: it forms a segment with ``verification`` (the fork), and ``readme_struct``
reads both outputs (the join).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings, workspace_layer

from wf_pipeline.metadata.records import ThreadRecord, TurnRecord
from wf_pipeline.profiles import Layer, default_layers, load_catalog, turn_segments
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.records import TurnCommit, merged_thread, open_record_store

WORKFLOW = "docs_writer_thread_v1"
SIBLINGS = ("verification", "side_notes")
# How long each sibling's provider call takes (s): long enough for their intervals to overlap.
DELAY_S = 0.4


def _parallel_workspace(tmp_path: Path) -> Path:
    """A workspace layer whose docs writer has a side_notes turn beside verification."""
    workspace = workspace_layer(tmp_path)
    path = workspace / "profiles" / f"{WORKFLOW}.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    turns = {turn["turn_id"]: turn for turn in document["turns"]}
    side_notes = {
        "turn_id": "side_notes",
        "seq": 3,
        "title": "Side notes",
        "prompt_ref": "assets/prompts/docs_writer/side_notes.md",
        "input_refs": ["context"],
        "output_type": "side_notes",
        "output_format": "json",
        "gate_id": "notes_gate",
        "retry_limit": 0,
        "timeout_ms": 60000,
    }
    turns["readme_struct"]["seq"] = 4
    turns["readme_struct"]["input_refs"] = [*turns["readme_struct"]["input_refs"], "side_notes"]
    turns["style_refine"]["seq"] = 5
    document["turns"] = [turns["evidence_gather"], turns["verification"], side_notes]
    document["turns"] += [turns["readme_struct"], turns["style_refine"]]
    document["gates"].append(
        {"gate_id": "notes_gate", "gate_type": "schema_required_fields", "required_fields": ["notes"]}
    )
    document["failure_policy"] = {"mode": "stop_on_gate_fail", "resume_from_failed_turn": True}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    template = workspace / "assets" / "prompts" / "docs_writer" / "side_notes.md"
    template.write_text("Notes on `{{ target_path }}`.\n\n<context>\n{{ inputs.context }}\n</context>\n")
    return workspace


class SlowSiblings:
    """The offline provider; the siblings' calls take `DELAY_S`, side_notes answers itself.

    While ``broken``, side_notes answers without notes: its gate fails.
    """

    def __init__(self, broken: bool = False) -> None:
        self._inner = create_provider("offline")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self.broken = broken
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self._lock:
            self.calls.append(request.turn_id)
        if request.turn_id in SIBLINGS:
            time.sleep(DELAY_S)
        if request.output_type == "side_notes":
            notes = {"other": 1} if self.broken else {"notes": ["n1"]}
            return ProviderResponse(
                text=json.dumps(notes), provider_type=self.provider_type, model=self.model
            )
        return self._inner.complete(request)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def tree(tmp_path):
    return copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")


def _loaded(settings, workspace: Path):
    return load_catalog(default_layers(settings, workspace)).get(WORKFLOW)


def _ids(segments) -> list[list[str]]:
    return [[turn.turn_id for turn in segment] for segment in segments]


# --- the rule ----------------------------------------------------------------------------


def test_turns_that_do_not_read_each_other_form_one_segment(settings, tmp_path):
    loaded = _loaded(settings, _parallel_workspace(tmp_path))
    assert _ids(turn_segments(loaded.profile)) == [
        ["evidence_gather"],
        ["verification", "side_notes"],
        ["readme_struct"],
        ["style_refine"],
    ]
    shipped = load_catalog([Layer("builtin", REPO_ROOT)]).get(WORKFLOW)
    assert _ids(turn_segments(shipped.profile)) == [[t.turn_id] for t in shipped.profile.ordered_turns()]


def test_the_fork_and_the_join_are_sibling_assets_of_one_step(settings, tmp_path):
    from wf_pipeline.compiler import build_definitions
    from wf_pipeline.compiler.assets import segment_op_name, turn_asset_key

    catalog = load_catalog(default_layers(settings, _parallel_workspace(tmp_path)))
    graph = build_definitions(catalog).resolve_asset_graph()

    def key(output: str):
        return turn_asset_key(WORKFLOW, output)

    assert set(graph.get(key("verification_report")).parent_keys) == {key("evidence_map")}
    assert set(graph.get(key("side_notes")).parent_keys) == set()
    assert set(graph.get(key("readme_struct")).parent_keys) == {
        key("evidence_map"),
        key("verification_report"),
        key("side_notes"),
    }
    fork = graph.get(key("side_notes")).assets_def
    assert fork is graph.get(key("verification_report")).assets_def
    assert fork.node_def.name == segment_op_name(WORKFLOW, 1) and fork.can_subset
    assert {c.asset_key for c in fork.check_keys} == {key("verification_report"), key("side_notes")}
    alone = graph.get(key("readme_struct")).assets_def
    assert alone.keys == {key("readme_struct")} and not alone.can_subset


# --- the record store --------------------------------------------------------------------


def _thread(status: str, seq: int, error: str | None = None) -> ThreadRecord:
    return ThreadRecord(
        thread_id="thread:p",
        workflow_id=WORKFLOW,
        target_node_id="node:1",
        status=status,
        created_at_ms=1,
        updated_at_ms=2,
        last_turn_seq=seq,
        error_code=error,
        error_text=error,
    )


def _turn(turn_id: str, seq: int, status: str, segment: int | None = 1) -> TurnRecord:
    return TurnRecord(
        turn_record_id=f"turn:{turn_id}",
        thread_id="thread:p",
        turn_id=turn_id,
        turn_seq=seq,
        attempt=1,
        status=status,
        started_at_ms=3,
        segment=segment,
        error_code="GATE_FAILED" if status == "failed" else None,
    )


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def records(request, tmp_path):
    if request.param == "postgresql":
        from postgres_support import fresh_database

        with fresh_database() as database:
            store = open_record_store(database.url.render_as_string(hide_password=False))
            try:
                yield store
            finally:
                store.close()
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'records.db'}"
    store = open_record_store(url)
    try:
        yield store
    finally:
        store.close()


def test_a_sibling_committing_after_a_failed_one_keeps_the_failure_and_the_furthest_seq(records):
    records.save_thread(_thread("running", 1))
    # side_notes (seq 3) fails first, then verification (seq 2), read before, completes.
    records.commit_turn(
        TurnCommit(thread=_thread("failed", 3, "GATE_FAILED"), turn=_turn("side_notes", 3, "failed"))
    )
    records.commit_turn(TurnCommit(thread=_thread("running", 2), turn=_turn("verification", 2, "completed")))
    stored = records.get_thread("thread:p")
    assert (stored.status, stored.error_code, stored.last_turn_seq) == ("failed", "GATE_FAILED", 3)
    # Resuming the failed sibling clears the failure.
    resumed = _turn("side_notes", 3, "completed").model_copy(update={"attempt": 2, "turn_record_id": "t:2"})
    records.commit_turn(TurnCommit(thread=_thread("running", 3), turn=resumed))
    stored = records.get_thread("thread:p")
    assert (stored.status, stored.error_code, stored.last_turn_seq) == ("running", None, 3)


def test_the_merge_rule_leaves_turns_outside_a_segment_and_a_finished_thread_alone():
    failed = _thread("failed", 2, "GATE_FAILED")
    # A turn that ran alone is written as it says (a retry after its own failure clears it).
    retried = merged_thread(failed, _thread("running", 2), _turn("verification", 2, "completed"), [])
    assert retried.status == "running" and retried.error_code is None
    # A sibling that read the thread before the other completed it does not set it back.
    done = merged_thread(
        _thread("completed", 5), _thread("running", 3), _turn("side_notes", 3, "completed"), []
    )
    assert (done.status, done.last_turn_seq) == ("completed", 5)


# --- end to end --------------------------------------------------------------------------


@pytest.mark.slow
def test_siblings_run_concurrently_and_replay_verify_matches(settings, tree, tmp_path):
    from wf_pipeline.runtime import RuntimeEnv
    from wf_pipeline.service import run_workflow
    from wf_pipeline.service.replay import replay

    workspace = _parallel_workspace(tmp_path)
    provider = SlowSiblings()
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider)
    assert summary.ok
    (thread,) = summary.threads
    with RuntimeEnv.open(settings) as env:
        turns = env.records.latest_turns(thread.thread_id)
    assert {t: turns[t].segment for t in turns} == {
        "evidence_gather": None,
        "verification": 1,
        "side_notes": 1,
        "readme_struct": None,
        "style_refine": None,
    }
    first, second = (turns[t] for t in SIBLINGS)
    # Each call took DELAY_S; run one after the other, their intervals would not meet.
    assert max(first.started_at_ms, second.started_at_ms) < min(first.ended_at_ms, second.ended_at_ms)
    assert turns["readme_struct"].started_at_ms >= max(first.ended_at_ms, second.ended_at_ms)

    report = replay(settings, thread_id=thread.thread_id, verify=True, workspace_dir=workspace)
    assert report.matched, [d.to_json() for t in report.threads for d in t.divergences]
    assert report.provider_calls == 0
    replayed = report.threads[0].turns
    assert [replayed[t][-1].segment for t in SIBLINGS] == [1, 1]


@pytest.mark.slow
def test_a_failing_sibling_gate_stops_the_join_only_and_resume_runs_from_it(settings, tree, tmp_path):
    from wf_pipeline.compiler import open_instance
    from wf_pipeline.compiler.assets import turn_asset_key
    from wf_pipeline.runtime import RuntimeEnv
    from wf_pipeline.service import resume_thread, run_workflow
    from wf_pipeline.service.replay import replay

    workspace = _parallel_workspace(tmp_path)
    provider = SlowSiblings(broken=True)
    (failed,) = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider).threads
    assert failed.status == "failed" and failed.error_code == "GATE_FAILED"
    assert sorted(provider.calls) == sorted(["evidence_gather", *SIBLINGS])
    with RuntimeEnv.open(settings) as env:
        turns = env.records.latest_turns(failed.thread_id)
        thread = env.records.get_thread(failed.thread_id)
    assert turns["verification"].status == "completed" and turns["side_notes"].status == "failed"
    assert "readme_struct" not in turns
    assert (thread.status, thread.error_code, thread.last_turn_seq) == ("failed", "GATE_FAILED", 3)
    with open_instance(settings) as instance:
        partitions = {
            output: instance.get_materialized_partitions(turn_asset_key(WORKFLOW, output))
            for output in ("verification_report", "side_notes", "readme_struct")
        }
    assert (
        partitions["verification_report"] and not partitions["side_notes"] and not partitions["readme_struct"]
    )

    provider.broken, provider.calls = False, []
    resumed = resume_thread(
        settings, failed.thread_id, workspace_dir=workspace, out_dir=tmp_path / "out", provider=provider
    )
    assert resumed.ok
    assert provider.calls == ["side_notes", "readme_struct", "style_refine"]
    report = replay(settings, thread_id=failed.thread_id, verify=True, workspace_dir=workspace)
    assert report.matched, [d.to_json() for t in report.threads for d in t.divergences]
