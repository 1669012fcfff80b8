"""The Dagster code location: it validates with dagster's own CLI, and the docs writer compiles
to the asset graph the design describes (assets per turn, blocking checks per gate, dynamic
partitions, one job, code versions that follow the prompts)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import warnings

import pytest
from dagster import AssetKey, Definitions, DynamicPartitionsDefinition
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.compiler.definitions import build_definitions
from wf_pipeline.profiles import Layer, default_layers, load_catalog
from wf_pipeline.runtime.targets import target_key_for

DAGSTER = REPO_ROOT / ".venv" / "bin" / "dagster"
WORKFLOW = "docs_writer_thread_v1"
OUTPUTS_AND_GATES = {
    "evidence_map": "evidence_gate",
    "verification_report": "verification_gate",
    "readme_struct": "struct_gate",
    "readme_final": "final_gate",
}
# Upstream assets of each output, from the profile's input_refs (the context is no asset).
EXPECTED_DEPS = {
    "evidence_map": set(),
    "verification_report": {"evidence_map"},
    "readme_struct": {"evidence_map", "verification_report"},
    "readme_final": {"readme_struct"},
}


def key(output_type: str) -> AssetKey:
    return AssetKey([WORKFLOW, output_type])


def test_dagster_validates_the_code_location(tmp_path):
    dagster_home = tmp_path / "dagster-home"
    dagster_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        WF_HOME=str(tmp_path / "wf-home"),
        WF_CONFIG_DIR=str(tmp_path / "user-config"),
    )

    result = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_location_loads_the_good_profiles_beside_a_broken_one(tmp_path):
    dagster_home = tmp_path / "dagster-home"
    dagster_home.mkdir()
    broken = tmp_path / "user-config" / "profiles" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("workflow_id: [unclosed\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        WF_HOME=str(tmp_path / "wf-home"),
        WF_CONFIG_DIR=str(tmp_path / "user-config"),
    )
    script = (
        "from wf_pipeline.definitions import defs; "
        "print(sorted(job.name for job in defs.resolve_all_job_defs()))"
    )

    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "python"), "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert WORKFLOW in result.stdout
    assert f"PROFILE_PARSE_ERROR: {broken}" in result.stderr  # the warning names the file and its code


@pytest.fixture
def code_location_defs(tmp_path, monkeypatch) -> Definitions:
    """``wf_pipeline.definitions.defs`` as the code location loads it, with no user or workspace profiles."""
    isolated_settings(monkeypatch, tmp_path / "wf-home")
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("wf_pipeline.definitions", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module("wf_pipeline.definitions")
    return module.defs


def test_docs_writer_compiles_to_one_asset_per_turn_with_deps_from_input_refs(code_location_defs):
    graph = code_location_defs.resolve_asset_graph()
    group = {
        k for k in graph.get_all_asset_keys() if k.path[0] == WORKFLOW and graph.get(k).group_name == WORKFLOW
    }
    assert group == {key(output) for output in OUTPUTS_AND_GATES}
    for output, upstream in EXPECTED_DEPS.items():
        node = graph.get(key(output))
        assert node.group_name == WORKFLOW
        assert set(node.parent_keys) == {key(ref) for ref in upstream}, output


def test_every_gate_is_a_blocking_check_on_its_turns_asset(code_location_defs):
    graph = code_location_defs.resolve_asset_graph()
    checks = {
        (c.asset_key, c.name): graph.get_check_spec(c)
        for c in graph.asset_check_keys
        if c.asset_key.path[0] == WORKFLOW and c.asset_key != key("replay")
    }
    assert set(checks) == {(key(output), gate) for output, gate in OUTPUTS_AND_GATES.items()}
    assert all(spec.blocking for spec in checks.values())


def test_the_replay_asset_shares_the_partitions_and_its_job_selects_it_alone(code_location_defs):
    graph = code_location_defs.resolve_asset_graph()
    replay = graph.get(key("replay"))
    assert replay.group_name == f"{WORKFLOW}_replay"
    assert set(replay.parent_keys) == {key("readme_final")}
    assert replay.partitions_def == graph.get(key("readme_final")).partitions_def
    check = graph.get_check_spec(next(c for c in graph.asset_check_keys if c.asset_key == key("replay")))
    assert check.name == "replay_matches" and not check.blocking
    job = code_location_defs.resolve_job_def(f"{WORKFLOW}_replay_job")
    assert set(job.asset_layer.selected_asset_keys) == {key("replay")}


def test_targets_are_dynamic_partitions_and_the_job_covers_the_group(code_location_defs):
    graph = code_location_defs.resolve_asset_graph()
    partitions = {graph.get(key(output)).partitions_def for output in OUTPUTS_AND_GATES}
    assert len(partitions) == 1
    [partitions_def] = partitions
    assert isinstance(partitions_def, DynamicPartitionsDefinition)
    assert partitions_def.name == f"{WORKFLOW}_targets"

    job = code_location_defs.resolve_job_def(f"{WORKFLOW}_job")
    assert job.partitions_def == partitions_def
    assert set(job.asset_layer.selected_asset_keys) == {key(output) for output in OUTPUTS_AND_GATES}


def _code_versions(defs: Definitions) -> dict[str, str]:
    graph = defs.resolve_asset_graph()
    return {output: graph.get(key(output)).code_version for output in OUTPUTS_AND_GATES}


def test_code_version_follows_the_prompt_template(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    builtin_only = build_definitions(load_catalog([Layer("builtin", settings.builtin_root)]))

    # A workspace layer with the shipped profile and one prompt reworded.
    workspace = tmp_path / "workspace"
    (workspace / "profiles").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    prompt = workspace / "assets" / "prompts" / "docs_writer" / "readme_struct.md"
    prompt.write_text(prompt.read_text() + "\nPrefer short sentences.\n")
    catalog = load_catalog(default_layers(settings, workspace))
    assert catalog.get(WORKFLOW).layer == "workspace"
    reworded = build_definitions(catalog)

    before, after = _code_versions(builtin_only), _code_versions(reworded)
    assert all(before.values())
    assert after["readme_struct"] != before["readme_struct"]
    assert {o: v for o, v in after.items() if o != "readme_struct"} == {
        o: v for o, v in before.items() if o != "readme_struct"
    }

    # The same bytes in another place give the same versions: only prompt content counts.
    prompt.write_text(prompt.read_text().removesuffix("\nPrefer short sentences.\n"))
    assert _code_versions(build_definitions(load_catalog(default_layers(settings, workspace)))) == before


def test_code_version_follows_the_gate_rules(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "wf-home")
    before = _code_versions(build_definitions(load_catalog([Layer("builtin", settings.builtin_root)])))

    # A workspace layer with the shipped profile and one threshold of the verification gate changed.
    workspace = tmp_path / "workspace"
    (workspace / "profiles").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    text = (REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text()
    needle = "    required_fields: [verified_claims]\n"
    assert needle in text
    profile = workspace / "profiles" / f"{WORKFLOW}.yaml"
    profile.write_text(text.replace(needle, needle + "    rules:\n      min_verified_claims: 2\n"))
    after = _code_versions(build_definitions(load_catalog(default_layers(settings, workspace))))

    # Only the asset the gate checks is stale; the rule at its default value changes nothing.
    assert after["verification_report"] != before["verification_report"]
    assert {o: v for o, v in after.items() if o != "verification_report"} == {
        o: v for o, v in before.items() if o != "verification_report"
    }
    profile.write_text(text.replace(needle, needle + "    rules:\n      min_verified_claims: 1\n"))
    assert _code_versions(build_definitions(load_catalog(default_layers(settings, workspace)))) == before


@pytest.mark.slow
def test_code_location_job_runs_a_target_on_its_own(tmp_path, monkeypatch):
    """What a UI launch does: the code location's job, one partition, no CLI, no thread tag."""
    from e2e_support import SAMPLE_REPO, copy_tree

    from wf_pipeline.compiler import open_instance, resolve_job
    from wf_pipeline.compiler.launch.executors import runtime_run_config
    from wf_pipeline.runtime import RuntimeEnv
    from wf_pipeline.service import run_workflow

    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    first = run_workflow(settings, WORKFLOW, tree)
    assert first.ok
    module = tree / "storage" / "memory.py"
    module.write_text(module.read_text() + '\n\ndef flush_all() -> None:\n    """Drop every store."""\n')

    # The settings reach the run as values, in the resource's config: not from this environment.
    monkeypatch.delenv("WF_HOME")
    monkeypatch.delenv("WF_CONFIG_DIR")
    defs = build_definitions(load_catalog(default_layers(settings, tmp_path)))
    result = resolve_job(defs, WORKFLOW).execute_in_process(
        partition_key=target_key_for(tree, "storage"),
        instance=open_instance(settings),
        raise_on_error=False,
        run_config=runtime_run_config(settings),
    )
    assert result.success
    env = RuntimeEnv.open(settings)
    threads = [t for t in env.records.list_threads(WORKFLOW) if t.target_path == "storage"]
    assert len(threads) == 2  # the old thread and the one for the changed directory
    new = next(t for t in threads if t.thread_id not in {x.thread_id for x in first.threads})
    assert new.status == "completed"
    head = env.records.head_frame(new.target_node_id, "readme")
    assert "flush_all" in env.cas.get_text(head.artifact_id)
    materialized = result.asset_materializations_for_node("docs_writer_thread_v1__readme_final")
    assert materialized[0].metadata["artifact_id"].value == head.artifact_id
