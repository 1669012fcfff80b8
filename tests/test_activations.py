"""Chained workflows at load time: ``activates:`` entries, the activation graph, its cycles; the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wf_pipeline.metadata.records import ActivationRecord
from wf_pipeline.profiles import Layer, load_catalog
from wf_pipeline.profiles.activations import activation_graph, find_cycle, graph_dot
from wf_pipeline.records import open_record_store
from wf_pipeline.records.memory import MemoryRecordStore

PROMPT = "Summarise {{ target_path }}:\n{{ inputs.context }}\n"


def _profile(workflow_id: str, activates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "workflow_id": workflow_id,
        "version": "1.0.0",
        "title": workflow_id,
        "description": "One turn for tests.",
        "thread_policy": {},
        "turns": [
            {
                "turn_id": "gather",
                "seq": 1,
                "title": "Gather",
                "prompt_ref": "prompts/gather.md",
                "input_refs": ["context"],
                "output_type": "notes",
                "output_format": "markdown",
            }
        ],
        "gates": [],
        "artifact_policy": {},
        "failure_policy": {},
    }
    if activates is not None:
        profile["activates"] = activates
    return profile


def _layer(root: Path, profiles: list[dict[str, Any]]) -> Layer:
    (root / "profiles").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "prompts" / "gather.md").write_text(PROMPT)
    for profile in profiles:
        (root / "profiles" / f"{profile['workflow_id']}.yaml").write_text(yaml.safe_dump(profile))
    return Layer("workspace", root)


def _problems(tmp_path: Path, profiles: list[dict[str, Any]]) -> dict[str, str]:
    catalog = load_catalog([_layer(tmp_path / "ws", profiles)], warn=False)
    return {Path(problem.path).stem: problem.error.code for problem in catalog.problems}


def _on_done(workflow: str, **extra: str) -> dict[str, str]:
    return {"workflow": workflow, "when": "all_threads_completed", **extra}


def test_a_sound_chain_loads_and_its_graph_lists_every_edge(tmp_path):
    catalog = load_catalog(
        [_layer(tmp_path / "ws", [_profile("first", [_on_done("second")]), _profile("second")])], warn=False
    )
    assert not catalog.problems
    graph = activation_graph({loaded.workflow_id: loaded.profile for loaded in catalog.all()})
    assert graph == {
        "nodes": ["first", "second"],
        "edges": [{"from": "first", "to": "second", "when": "all_threads_completed", "target": "root"}],
    }
    dot = graph_dot(graph)
    assert dot.startswith("digraph activations {")
    assert '"first" -> "second" [label="all_threads_completed (root)"];' in dot


def test_an_unknown_target_workflow_fails_its_profile_only(tmp_path):
    problems = _problems(tmp_path, [_profile("first", [_on_done("nowhere")]), _profile("second")])
    assert problems == {"first": "PROFILE_ACTIVATION_UNKNOWN_WORKFLOW"}


def test_an_unknown_condition_has_its_own_code(tmp_path):
    entry = {"workflow": "second", "when": "some_threads_completed"}
    problems = _problems(tmp_path, [_profile("first", [entry]), _profile("second")])
    assert problems == {"first": "PROFILE_ACTIVATION_UNKNOWN_CONDITION"}


def test_a_target_other_than_root_has_its_own_code(tmp_path):
    problems = _problems(
        tmp_path, [_profile("first", [_on_done("second", target="leaves")]), _profile("second")]
    )
    assert problems == {"first": "PROFILE_ACTIVATION_BAD_TARGET"}


def test_one_workflow_activated_twice_has_its_own_code(tmp_path):
    problems = _problems(
        tmp_path, [_profile("first", [_on_done("second"), _on_done("second")]), _profile("second")]
    )
    assert problems == {"first": "PROFILE_ACTIVATION_DUPLICATE"}


def test_a_workflow_that_activates_itself_is_a_cycle(tmp_path):
    problems = _problems(tmp_path, [_profile("loop", [_on_done("loop")]), _profile("other")])
    assert problems == {"loop": "PROFILE_ACTIVATION_CYCLE"}


def test_a_cycle_fails_every_profile_on_it_and_names_it(tmp_path):
    profiles = [
        _profile("a_flow", [_on_done("b_flow")]),
        _profile("b_flow", [_on_done("c_flow")]),
        _profile("c_flow", [_on_done("a_flow")]),
        _profile("outside", [_on_done("a_flow")]),
    ]
    catalog = load_catalog([_layer(tmp_path / "ws", profiles)], warn=False)
    by_stem = {Path(problem.path).stem: problem.error for problem in catalog.problems}
    assert {stem: error.code for stem, error in by_stem.items() if stem != "outside"} == {
        "a_flow": "PROFILE_ACTIVATION_CYCLE",
        "b_flow": "PROFILE_ACTIVATION_CYCLE",
        "c_flow": "PROFILE_ACTIVATION_CYCLE",
    }
    assert by_stem["a_flow"].details["cycle"] == ["a_flow", "b_flow", "c_flow", "a_flow"]
    # The profile outside the cycle activated one that is gone now: it cannot load either.
    assert by_stem["outside"].code == "PROFILE_ACTIVATION_UNKNOWN_WORKFLOW"
    assert catalog.profiles == {}


def test_activates_of_the_wrong_shape_is_a_schema_error(tmp_path):
    profile = _profile("first")
    profile["activates"] = {"workflow": "second"}
    assert _problems(tmp_path, [profile, _profile("second")]) == {"first": "PROFILE_SCHEMA_INVALID"}


def test_an_entry_without_a_condition_is_a_schema_error(tmp_path):
    problems = _problems(tmp_path, [_profile("first", [{"workflow": "second"}]), _profile("second")])
    assert problems == {"first": "PROFILE_SCHEMA_INVALID"}


def test_find_cycle_returns_none_for_a_chain_and_the_path_for_a_loop():
    from wf_pipeline.profiles.activations import ActivationEdge

    chain = [ActivationEdge("a", "b", "c", "root"), ActivationEdge("b", "c", "c", "root")]
    assert find_cycle(chain) is None
    assert find_cycle([*chain, ActivationEdge("c", "b", "c", "root")]) == ["b", "c", "b"]


def _activation(activation_id: str, source: str = "first") -> ActivationRecord:
    return ActivationRecord(
        activation_id=activation_id,
        source_workflow_id=source,
        target_workflow_id="second",
        condition="all_threads_completed",
        tree_root_id="ab" * 32,
        target_key="tree~ababab",
        thread_ids=("t1", "t2"),
        threads_digest="sha256:" + "0" * 64,
        created_at_ms=1,
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryRecordStore()
        return
    opened = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    yield opened
    opened.close()


def test_an_activation_is_recorded_once_and_listed_per_upstream_workflow(store):
    stored, inserted = store.add_activation(_activation("act-1"))
    assert inserted and stored.thread_ids == ("t1", "t2")
    again, inserted_again = store.add_activation(_activation("act-1"))
    assert not inserted_again and again == stored
    store.add_activation(_activation("act-2", source="other"))
    assert [record.activation_id for record in store.list_activations("first")] == ["act-1"]
    assert {record.activation_id for record in store.list_activations()} == {"act-1", "act-2"}
