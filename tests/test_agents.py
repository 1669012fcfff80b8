"""Agents in YAML: every load error with its code, layering, and the selection policy per target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_activations import _profile

from wf_pipeline.agents import load_agent_file, load_agents, plan_agent, select
from wf_pipeline.agents.loader import AGENT_DIR
from wf_pipeline.agents.policy import glob_problem
from wf_pipeline.errors import ProfileError
from wf_pipeline.profiles import Layer, load_catalog

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Summarise {{ target_path }}:\n{{ inputs.context }}\n"
WORKFLOWS = ("dir_flow", "root_flow", "py_flow")


@pytest.fixture
def layer(tmp_path) -> Layer:
    root = tmp_path / "ws"
    (root / "profiles").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / AGENT_DIR).mkdir()
    (root / "prompts" / "gather.md").write_text(PROMPT)
    for workflow_id in WORKFLOWS:
        (root / "profiles" / f"{workflow_id}.yaml").write_text(yaml.safe_dump(_profile(workflow_id)))
    return Layer("workspace", root)


def _agent(**overrides: Any) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "agent_id": "doc_bot",
        "role": "documents trees",
        "bindings": [
            {"workflow": "dir_flow", "target": "directory", "priority": 0, "default": True},
            {"workflow": "root_flow", "target": "root", "priority": 10},
            {"workflow": "py_flow", "target": {"glob": "*.py"}, "priority": 5},
        ],
    }
    agent.update(overrides)
    return agent


def _write(layer: Layer, agent: dict[str, Any], name: str = "doc_bot") -> Path:
    path = layer.root / AGENT_DIR / f"{name}.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


def _code(layer: Layer, agent: dict[str, Any]) -> str:
    path = _write(layer, agent)
    with pytest.raises(ProfileError) as caught:
        load_agent_file(path, "workspace", load_catalog([layer], warn=False))
    assert str(path) in caught.value.message
    return caught.value.code


def _binding(workflow: str, target: Any, priority: int = 0, default: bool = False) -> dict[str, Any]:
    return {"workflow": workflow, "target": target, "priority": priority, "default": default}


def test_a_sound_agent_loads(layer):
    _write(layer, _agent())
    agents = load_agents([layer], load_catalog([layer], warn=False))
    assert not agents.problems
    assert [b.kind for b in agents.get("doc_bot").agent.bindings] == ["directory", "root", "glob:*.py"]


def test_an_unknown_workflow_is_refused(layer):
    agent = _agent(bindings=[_binding("dir_flow", "directory", default=True), _binding("nowhere", "root", 5)])
    assert _code(layer, agent) == "AGENT_UNKNOWN_WORKFLOW"


def test_an_agent_without_a_default_is_refused(layer):
    agent = _agent(bindings=[_binding("dir_flow", "directory"), _binding("root_flow", "root", 5)])
    assert _code(layer, agent) == "AGENT_NO_DEFAULT"


def test_two_defaults_are_refused_too(layer):
    agent = _agent(
        bindings=[
            _binding("dir_flow", "directory", default=True),
            _binding("root_flow", "root", 5, default=True),
        ]
    )
    assert _code(layer, agent) == "AGENT_NO_DEFAULT"


def test_equal_priorities_that_can_match_one_target_are_ambiguous(layer):
    # A glob can match the root, so a root binding of the same priority would need a tie-break.
    agent = _agent(
        bindings=[_binding("root_flow", "root", 3, default=True), _binding("py_flow", {"glob": "*.py"}, 3)]
    )
    assert _code(layer, agent) == "AGENT_AMBIGUOUS_SELECTION"


def test_two_globs_of_one_priority_are_ambiguous(layer):
    agent = _agent(
        bindings=[
            _binding("dir_flow", "directory", 0, default=True),
            _binding("py_flow", {"glob": "*.py"}, 4),
            _binding("root_flow", {"glob": "*.toml"}, 4),
        ]
    )
    assert _code(layer, agent) == "AGENT_AMBIGUOUS_SELECTION"


def test_root_and_directory_of_one_priority_never_meet(layer):
    agent = _agent(
        bindings=[_binding("dir_flow", "directory", 1, default=True), _binding("root_flow", "root", 1)]
    )
    path = _write(layer, agent)
    assert load_agent_file(path, "workspace", load_catalog([layer], warn=False)).agent_id == "doc_bot"


@pytest.mark.parametrize("pattern", ["", "src/*.py", "[abc"])
def test_a_bad_glob_is_refused(layer, pattern):
    agent = _agent(
        bindings=[_binding("dir_flow", "directory", default=True), _binding("py_flow", {"glob": pattern}, 5)]
    )
    assert _code(layer, agent) == "AGENT_BAD_GLOB"


def test_an_unknown_target_kind_is_a_schema_error(layer):
    agent = _agent(bindings=[_binding("dir_flow", "leaves", default=True)])
    assert _code(layer, agent) == "AGENT_SCHEMA_INVALID"


def test_an_unknown_provider_is_refused(layer):
    assert _code(layer, _agent(provider="no_such_provider")) == "AGENT_UNKNOWN_PROVIDER"


def test_a_file_that_is_not_yaml_is_a_parse_error(layer):
    path = layer.root / AGENT_DIR / "broken.yaml"
    path.write_text("agent_id: [unclosed\n")
    with pytest.raises(ProfileError) as caught:
        load_agent_file(path, "workspace", load_catalog([layer], warn=False))
    assert caught.value.code == "AGENT_PARSE_ERROR"


def test_two_files_of_one_layer_with_one_id_are_a_duplicate(layer):
    _write(layer, _agent(), "a_first")
    _write(layer, _agent(), "b_second")
    agents = load_agents([layer], load_catalog([layer], warn=False))
    assert [(p.path.name, p.error.code) for p in agents.problems] == [("b_second.yaml", "AGENT_DUPLICATE_ID")]
    assert agents.get("doc_bot").source_path.name == "a_first.yaml"


def test_a_higher_layer_shadows_an_agent_and_a_missing_one_is_not_found(layer, tmp_path):
    user = Layer("user", tmp_path / "user")
    (user.root / AGENT_DIR).mkdir(parents=True)
    _write(layer, _agent(role="workspace copy"))
    (user.root / AGENT_DIR / "doc_bot.yaml").write_text(yaml.safe_dump(_agent(role="user copy")))
    agents = load_agents([layer, user], load_catalog([layer], warn=False))
    assert agents.get("doc_bot").agent.role == "workspace copy"
    with pytest.raises(ProfileError) as caught:
        agents.get("nobody")
    assert caught.value.code == "AGENT_NOT_FOUND"


def test_the_policy_picks_by_priority_and_falls_back_to_the_default(layer):
    path = _write(layer, _agent())
    agent = load_agent_file(path, "workspace", load_catalog([layer], warn=False)).agent
    assert select(agent, ".", ["setup.py"]).workflow == "root_flow"  # root (10) over the glob (5)
    assert select(agent, "pkg", ["mod.py"]).workflow == "py_flow"  # the glob (5) over directory (0)
    assert select(agent, "docs", ["index.md"]).workflow == "dir_flow"
    # A tree whose root no binding could take would get the default: here root_flow matches.
    plan = plan_agent(agent, [("pkg/sub", ["a.py"]), ("docs", ["x.md"]), (".", ["README"])])
    assert plan.by_workflow == {"dir_flow": ("docs",), "root_flow": (".",), "py_flow": ("pkg/sub",)}


def test_a_target_no_binding_matches_takes_the_default(layer):
    agent_data = _agent(
        bindings=[_binding("py_flow", {"glob": "*.py"}, 1, default=True), _binding("root_flow", "root", 5)]
    )
    agent = load_agent_file(_write(layer, agent_data), "workspace", load_catalog([layer], warn=False)).agent
    assert select(agent, "docs", ["index.md"]).workflow == "py_flow"


def test_glob_problem_accepts_ordinary_patterns():
    assert glob_problem("*.py") is None
    assert glob_problem("[!.]*.toml") is None
    assert glob_problem("x]") is None


def test_the_builtin_docs_agent_binds_the_docs_writer_for_directories_and_architecture_notes_for_the_root(
    tmp_path,
):
    # architecture_notes_v1 is its own workflow; a stand-in profile of that id lets the agent load.
    ws = tmp_path / "ws"
    (ws / "profiles").mkdir(parents=True)
    (ws / "prompts").mkdir()
    (ws / "prompts" / "gather.md").write_text(PROMPT)
    for workflow_id in ("docs_writer_thread_v1", "architecture_notes_v1"):
        (ws / "profiles" / f"{workflow_id}.yaml").write_text(yaml.safe_dump(_profile(workflow_id)))
    catalog = load_catalog([Layer("workspace", ws)], warn=False)
    loaded = load_agent_file(REPO_ROOT / "agents" / "docs_agent.yaml", "builtin", catalog)
    plan = plan_agent(loaded.agent, [("pkg", ["a.py"]), (".", ["pyproject.toml"])])
    assert plan.by_workflow == {"docs_writer_thread_v1": ("pkg",), "architecture_notes_v1": (".",)}
