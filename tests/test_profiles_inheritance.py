"""Profile families, inheritance (extends) and composition (include): resolution rules and load errors."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wf_pipeline.errors import ProfileError
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.profiles import Layer, describe_resolved, load_catalog, load_profile_file
from wf_pipeline.profiles.snapshot import load_profile_snapshot, profile_snapshot
from wf_pipeline.service import show_profile, validate_profiles
from wf_pipeline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_WRITER = "docs_writer_thread_v1"

# Computed from profiles/docs_writer_thread_v1.yaml as it was before it extended docs_family
# (retention, encryption, redaction and the final gate's max_drift written in the profile).
# Moving them into the base must change none of these: threads keep their ids and pins.
DOCS_WRITER_CODE_VERSION = "1.0.0-9a972bd8b25d"
DOCS_WRITER_TURN_CODE_VERSIONS = {
    "evidence_gather": "1.0.0-b0970afba87e",
    "verification": "1.0.0-568ceb734740",
    "readme_struct": "1.0.0-c5136f3e2929",
    "style_refine": "1.0.0-57e93aa0d27e",
}
# The snapshot holds every field of the resolved profile, `activates` included: the docs
# writer's activation of the architecture notes (added with the base) gave it this id; the
# base itself changed nothing in it.
DOCS_WRITER_SNAPSHOT_ID = "sha256:bc35219ca7e6bf709ff4a5759dd4627185b9391c72d826e1efe88ded370ee492"

PROMPT = "Summarise {{ target_path }}:\n{{ inputs.context }}\n"
REFINE_PROMPT = "Refine {{ target_name }}:\n{{ inputs.notes }}\n"


def turn(turn_id: str, seq: int, output_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "turn_id": turn_id,
        "seq": seq,
        "title": turn_id.title(),
        "prompt_ref": "prompts/gather.md",
        "input_refs": ["context"],
        "output_type": output_type,
        **extra,
    }


GATHER = turn("gather", 1, "notes", gate_id="notes_gate")
NOTES_GATE = {"gate_id": "notes_gate", "gate_type": "schema_required_fields", "required_fields": ["claims"]}

PROFILE: dict[str, Any] = {
    "workflow_id": "tiny_flow",
    "version": "1.0.0",
    "title": "Tiny",
    "description": "For tests.",
    "thread_policy": {},
    "turns": [GATHER],
    "gates": [NOTES_GATE],
    "artifact_policy": {},
    "failure_policy": {},
}


def profile(**overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PROFILE)
    doc.update(copy.deepcopy(overrides))
    return {key: value for key, value in doc.items() if value is not None}


def layer_root(
    root: Path,
    profiles: dict[str, Any] | None = None,
    bases: dict[str, Any] | None = None,
    fragments: dict[str, Any] | None = None,
) -> Path:
    """A layer root with a prompt file and the given profiles, bases and fragments (name -> dict or raw text)."""
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "gather.md").write_text(PROMPT, encoding="utf-8")
    (root / "prompts" / "refine.md").write_text(REFINE_PROMPT, encoding="utf-8")
    for folder, docs in (
        ("profiles", profiles),
        ("profiles/bases", bases),
        ("profiles/fragments", fragments),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, doc in (docs or {}).items():
            text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
            (root / folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


def load(tmp_path: Path, doc: dict[str, Any], bases=None, fragments=None):
    root = layer_root(tmp_path / "ws", {"tiny": doc}, bases, fragments)
    layer = Layer("workspace", root)
    return load_profile_file(root / "profiles" / "tiny.yaml", layer, search=[layer])


def load_fails(tmp_path: Path, doc: dict[str, Any], code: str, bases=None, fragments=None) -> ProfileError:
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, doc, bases, fragments)
    assert caught.value.code == code, caught.value
    assert caught.value.details["path"].endswith("tiny.yaml")
    return caught.value


def builtin_docs_writer(search: list[Layer] | None = None):
    builtin = Layer("builtin", REPO_ROOT)
    return load_profile_file(
        REPO_ROOT / "profiles" / f"{DOCS_WRITER}.yaml", builtin, search=search or [builtin]
    )


# --- the docs writer keeps its code versions ------------------------------------------------


def test_docs_writer_extends_docs_family_with_byte_identical_code_versions() -> None:
    loaded = builtin_docs_writer()
    assert loaded.resolution is not None and loaded.resolution.family == "docs_family"
    assert [source.label for source in loaded.resolution.sources] == [
        "base docs_family",
        f"profile {DOCS_WRITER}",
    ]
    assert loaded.code_version == DOCS_WRITER_CODE_VERSION
    assert {t: loaded.turn_code_version(t) for t in loaded.templates} == DOCS_WRITER_TURN_CODE_VERSIONS
    # The pinned snapshot is the same artifact: a pinned thread's resume reads the same bytes.
    assert digest(profile_snapshot(loaded)) == DOCS_WRITER_SNAPSHOT_ID
    rebuilt = load_profile_snapshot(profile_snapshot(loaded), DOCS_WRITER_SNAPSHOT_ID)
    assert rebuilt.code_version == DOCS_WRITER_CODE_VERSION


def test_docs_family_defaults_reach_the_resolved_docs_writer() -> None:
    loaded = builtin_docs_writer()
    own = yaml.safe_load((REPO_ROOT / "profiles" / f"{DOCS_WRITER}.yaml").read_text(encoding="utf-8"))
    assert not {"retention", "encryption", "redaction"} & set(own)  # moved to the base
    assert loaded.profile.retention == {"preset": "docs_family"}
    assert loaded.profile.encryption == {"preset": "docs_family"}
    assert loaded.profile.redaction == {"preset": "standard"}
    assert loaded.profile.gate("final_gate").rules == {"max_drift": 0.15}
    assert "rules" not in loaded.profile.gate("evidence_gate").model_fields_set
    origins = loaded.resolution.origins
    assert origins["retention.preset"].label == "base docs_family"
    assert origins["gates.final_gate.rules.max_drift"].label == "base docs_family"
    assert origins["turns.verification"].label == f"profile {DOCS_WRITER}"


# --- resolution rules -----------------------------------------------------------------------


def test_bases_apply_left_to_right_and_the_profile_last(tmp_path: Path) -> None:
    bases = {
        "first": {"title": "From first", "description": "first", "thread_policy": {"max_turn_retries": 1}},
        "second": {"title": "From second", "thread_policy": {"max_turn_retries": 3}},
    }
    loaded = load(tmp_path, profile(extends=["first", "second"], title=None, thread_policy=None), bases)
    assert loaded.profile.title == "From second"  # the later base wins a scalar
    assert loaded.profile.description == "For tests."  # the profile's own key wins over both
    assert loaded.profile.thread_policy.max_turn_retries == 3
    assert loaded.resolution.origins["title"].label == "base second"
    assert loaded.resolution.origins["description"].label == "profile tiny_flow"

    swapped = load(
        tmp_path / "swapped", profile(extends=["second", "first"], title=None, thread_policy=None), bases
    )
    assert swapped.profile.title == "From first"


def test_mappings_merge_key_by_key(tmp_path: Path) -> None:
    bases = {"limits": {"artifact_policy": {"max_output_bytes": 1000, "max_prompt_bytes": 900000}}}
    loaded = load(tmp_path, profile(extends=["limits"], artifact_policy={"max_output_bytes": 2000}), bases)
    assert loaded.profile.artifact_policy.max_output_bytes == 2000
    assert loaded.profile.artifact_policy.max_prompt_bytes == 900000
    origins = loaded.resolution.origins
    assert origins["artifact_policy.max_output_bytes"].label == "profile tiny_flow"
    assert origins["artifact_policy.max_prompt_bytes"].label == "base limits"


def test_other_lists_and_mismatched_kinds_are_replaced_whole(tmp_path: Path) -> None:
    bases = {
        "keys": {
            "thread_policy": {"dedupe_key_fields": ["workflow_id", "target_node_id", "target_frame_id"]},
            "retention": {"mode": {"prompt_render": "shred"}},
        }
    }
    doc = profile(
        extends=["keys"],
        thread_policy={"dedupe_key_fields": ["workflow_id", "target_node_id"]},
        retention={"mode": "delete"},
    )
    loaded = load(tmp_path, doc, bases)
    assert loaded.profile.thread_policy.dedupe_key_fields == ["workflow_id", "target_node_id"]
    assert loaded.profile.retention == {"mode": "delete"}  # a scalar replaces a mapping


def test_turns_and_gates_merge_by_id_and_identical_definitions_are_kept_once(tmp_path: Path) -> None:
    refine = turn("refine", 2, "final_text", prompt_ref="prompts/refine.md", input_refs=["notes"])
    bases = {"pipeline": {"turns": [GATHER], "gates": [NOTES_GATE]}}
    loaded = load(tmp_path, profile(extends=["pipeline"], turns=[GATHER, refine]), bases)
    assert [t.turn_id for t in loaded.profile.ordered_turns()] == ["gather", "refine"]
    assert [g.gate_id for g in loaded.profile.gates] == ["notes_gate"]
    # An identical definition is kept once, attributed to the first document that made it.
    assert loaded.resolution.origins["turns.gather"].label == "base pipeline"
    assert loaded.resolution.origins["turns.refine"].label == "profile tiny_flow"


def test_fragments_add_turns_and_gates_after_the_bases_and_before_the_profile(tmp_path: Path) -> None:
    refine = turn("refine", 2, "final_text", prompt_ref="prompts/refine.md", input_refs=["notes"])
    fragments = {"refining": {"turns": [refine]}, "gating": {"gates": [NOTES_GATE]}}
    bases = {"with_gate": {"include": ["gating"], "description": "from base"}}
    doc = profile(extends=["with_gate"], include=["refining"], gates=None)
    loaded = load(tmp_path, doc, bases, fragments)
    assert [t.turn_id for t in loaded.profile.ordered_turns()] == ["gather", "refine"]
    assert [source.label for source in loaded.resolution.sources] == [
        "fragment gating",
        "base with_gate",
        "fragment refining",
        "profile tiny_flow",
    ]
    assert loaded.resolution.origins["gates.notes_gate"].label == "fragment gating"


def test_shared_bases_are_applied_once_after_their_own_bases(tmp_path: Path) -> None:
    # tiny extends [left, right]; both extend root. root must not come back after left and undo it.
    bases = {
        "root": {"description": "root", "title": "root"},
        "left": {"extends": ["root"], "title": "left"},
        "right": {"extends": ["root"]},
    }
    loaded = load(tmp_path, profile(extends=["left", "right"], title=None, description=None), bases)
    assert loaded.profile.title == "left"
    assert loaded.profile.description == "root"
    assert [s.label for s in loaded.resolution.sources] == [
        "base root",
        "base left",
        "base right",
        "profile tiny_flow",
    ]


def test_family_gate_rules_apply_by_gate_type_and_a_gates_own_rule_wins(tmp_path: Path) -> None:
    final = turn(
        "refine", 2, "final_text", prompt_ref="prompts/refine.md", input_refs=["notes"], gate_id="g2"
    )
    bases = {
        "fam": {
            "family": "fam",
            "gate_rules": {"docs_readme_final": {"max_drift": 0.2}},
        }
    }
    gates = [NOTES_GATE, {"gate_id": "g2", "gate_type": "docs_readme_final"}]
    loaded = load(tmp_path, profile(extends=["fam"], turns=[GATHER, final], gates=gates), bases)
    assert loaded.profile.gate("g2").rules == {"max_drift": 0.2}
    assert "rules" not in loaded.profile.gate("notes_gate").model_fields_set
    assert loaded.resolution.family == "fam"

    own = [NOTES_GATE, {"gate_id": "g2", "gate_type": "docs_readme_final", "rules": {"max_drift": 0.05}}]
    overridden = load(tmp_path / "own", profile(extends=["fam"], turns=[GATHER, final], gates=own), bases)
    assert overridden.profile.gate("g2").rules == {"max_drift": 0.05}
    assert overridden.code_version != loaded.code_version  # a threshold is part of the code version


def test_a_base_turn_reads_its_prompt_from_the_base_layer(tmp_path: Path) -> None:
    builtin = layer_root(tmp_path / "builtin", bases={"shared": {"turns": [GATHER], "gates": [NOTES_GATE]}})
    workspace = tmp_path / "ws"
    (workspace / "profiles").mkdir(parents=True)
    (workspace / "profiles" / "tiny.yaml").write_text(
        yaml.safe_dump(profile(extends=["shared"], turns=[], gates=[])), encoding="utf-8"
    )
    catalog = load_catalog([Layer("workspace", workspace), Layer("builtin", builtin)])
    assert not catalog.problems, [p.message for p in catalog.problems]
    loaded = catalog.get("tiny_flow")
    assert loaded.layer == "workspace"
    assert loaded.templates["gather"].text == PROMPT


# --- workspace overrides ---------------------------------------------------------------------


def test_a_workspace_copy_of_a_base_overrides_the_builtin_one(tmp_path: Path) -> None:
    builtin = layer_root(tmp_path / "builtin", {"tiny": profile(extends=["fam"])}, {"fam": {"family": "fam"}})
    workspace = layer_root(
        tmp_path / "ws", bases={"fam": {"family": "fam", "retention": {"prompt_render": "1s"}}}
    )
    layers = [Layer("workspace", workspace), Layer("builtin", builtin)]
    loaded = load_catalog(layers).get("tiny_flow")
    assert loaded.layer == "builtin"
    assert loaded.profile.retention == {"prompt_render": "1s"}
    assert loaded.resolution.origins["retention.prompt_render"].layer.name == "workspace"
    assert load_catalog(layers[1:]).get("tiny_flow").profile.retention is None


def test_a_workspace_profile_may_extend_the_builtin_docs_family(tmp_path: Path) -> None:
    workspace = layer_root(tmp_path / "ws", {"tiny": profile(family="docs_family", extends=["docs_family"])})
    loaded = load_catalog([Layer("workspace", workspace), Layer("builtin", REPO_ROOT)]).get("tiny_flow")
    assert loaded.profile.retention == {"preset": "docs_family"}
    assert loaded.resolution.origins["retention.preset"].layer.name == "builtin"


def test_a_workspace_copy_of_docs_family_changes_the_docs_writer_threshold(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO_ROOT / "profiles" / "bases" / "docs_family.yaml").read_text(encoding="utf-8"))
    base["gate_rules"]["docs_readme_final"]["max_drift"] = 0.3
    workspace = layer_root(tmp_path / "ws", bases={"docs_family": base})
    loaded = builtin_docs_writer([Layer("workspace", workspace), Layer("builtin", REPO_ROOT)])
    assert loaded.profile.gate("final_gate").rules == {"max_drift": 0.3}
    assert loaded.turn_code_version("style_refine") != DOCS_WRITER_TURN_CODE_VERSIONS["style_refine"]
    assert loaded.turn_code_version("verification") == DOCS_WRITER_TURN_CODE_VERSIONS["verification"]


# --- load errors, each with its code ---------------------------------------------------------


def test_cycle_between_bases(tmp_path: Path) -> None:
    bases = {"a": {"extends": ["b"]}, "b": {"extends": ["c"]}, "c": {"extends": ["a"]}}
    error = load_fails(tmp_path, profile(extends=["a"]), "PROFILE_INHERITANCE_CYCLE", bases)
    assert error.details["cycle"] == ["a", "b", "c", "a"]
    assert error.details["chain"] == ["tiny_flow", "a", "b", "c", "a"]


def test_base_extending_itself(tmp_path: Path) -> None:
    error = load_fails(
        tmp_path, profile(extends=["a"]), "PROFILE_INHERITANCE_CYCLE", {"a": {"extends": ["a"]}}
    )
    assert error.details["cycle"] == ["a", "a"]


def test_missing_base(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(extends=["nowhere"]), "PROFILE_BASE_NOT_FOUND")
    assert error.details["base_id"] == "nowhere"
    assert error.details["chain"] == ["tiny_flow", "nowhere"]


def test_missing_base_of_a_base(tmp_path: Path) -> None:
    error = load_fails(
        tmp_path, profile(extends=["a"]), "PROFILE_BASE_NOT_FOUND", {"a": {"extends": ["gone"]}}
    )
    assert error.details["chain"] == ["tiny_flow", "a", "gone"]


def test_missing_fragment(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(include=["nowhere"]), "PROFILE_FRAGMENT_NOT_FOUND")
    assert error.details["fragment_id"] == "nowhere"


def test_conflicting_turn_ids(tmp_path: Path) -> None:
    other = {**GATHER, "title": "Another gather"}
    error = load_fails(
        tmp_path, profile(extends=["a"]), "PROFILE_TURN_ID_CONFLICT", {"a": {"turns": [other]}}
    )
    assert error.details["turn_id"] == "gather"
    assert error.details["sources"] == ["base a", "profile tiny_flow"]


def test_conflicting_turn_ids_between_two_fragments(tmp_path: Path) -> None:
    fragments = {"one": {"turns": [GATHER]}, "two": {"turns": [{**GATHER, "timeout_ms": 5}]}}
    error = load_fails(
        tmp_path, profile(include=["one", "two"], turns=[]), "PROFILE_TURN_ID_CONFLICT", fragments=fragments
    )
    assert error.details["sources"] == ["fragment one", "fragment two"]


def test_conflicting_gate_ids(tmp_path: Path) -> None:
    other = {**NOTES_GATE, "required_fields": ["title"]}
    error = load_fails(
        tmp_path, profile(extends=["a"]), "PROFILE_GATE_ID_CONFLICT", {"a": {"gates": [other]}}
    )
    assert error.details["gate_id"] == "notes_gate"


def test_malformed_base_yaml(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(extends=["a"]), "PROFILE_BASE_INVALID", {"a": "title: [unclosed\n"})
    assert error.details["base_path"].endswith("bases/a.yaml")
    assert error.details["line"] is not None


def test_base_that_is_not_a_mapping(tmp_path: Path) -> None:
    load_fails(tmp_path, profile(extends=["a"]), "PROFILE_BASE_INVALID", {"a": "- one\n- two\n"})


def test_base_with_a_key_no_profile_has(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(extends=["a"]), "PROFILE_BASE_INVALID", {"a": {"colour": "blue"}})
    assert error.details["fields"] == ["colour"]


def test_base_with_malformed_gate_rules(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(extends=["a"]), "PROFILE_BASE_INVALID", {"a": {"gate_rules": [1]}})
    assert error.details["fields"] == ["gate_rules"]


def test_base_whose_gate_rules_name_an_unknown_gate_type(tmp_path: Path) -> None:
    # A misspelt gate type would set no threshold anywhere.
    bases = {"a": {"gate_rules": {"docs_readme_finall": {"max_drift": 0.1}}}}
    error = load_fails(tmp_path, profile(extends=["a"]), "PROFILE_BASE_INVALID", bases)
    assert error.details["fields"] == ["gate_rules.docs_readme_finall"]


def test_a_chain_of_bases_deeper_than_the_bound_fails_with_a_code(tmp_path: Path) -> None:
    depth = 70
    bases = {f"b{i}": {"extends": [f"b{i + 1}"]} for i in range(depth)} | {f"b{depth}": {}}
    error = load_fails(tmp_path, profile(extends=["b0"]), "PROFILE_BASE_INVALID", bases)
    assert error.details["depth"] == 65


def test_malformed_fragment(tmp_path: Path) -> None:
    error = load_fails(
        tmp_path, profile(include=["f"]), "PROFILE_FRAGMENT_INVALID", fragments={"f": {"title": "no"}}
    )
    assert error.details["fields"] == ["title"]


def test_fragment_whose_turns_are_not_a_list(tmp_path: Path) -> None:
    load_fails(tmp_path, profile(include=["f"]), "PROFILE_FRAGMENT_INVALID", fragments={"f": {"turns": {}}})


def test_extends_naming_a_profile(tmp_path: Path) -> None:
    root = layer_root(
        tmp_path / "ws", {"tiny": profile(extends=["other_flow"]), "other": profile(workflow_id="other_flow")}
    )
    catalog = load_catalog([Layer("workspace", root)])
    [problem] = catalog.problems
    assert problem.error.code == "PROFILE_EXTENDS_NON_BASE"
    assert "other.yaml" in problem.error.details["found"]
    assert catalog.get("other_flow").workflow_id == "other_flow"  # the other profile still loads


def test_extends_naming_a_fragment(tmp_path: Path) -> None:
    load_fails(
        tmp_path, profile(extends=["f"]), "PROFILE_EXTENDS_NON_BASE", fragments={"f": {"turns": [GATHER]}}
    )


def test_a_profile_copied_into_bases_is_not_a_base(tmp_path: Path) -> None:
    load_fails(tmp_path, profile(extends=["copy"]), "PROFILE_EXTENDS_NON_BASE", {"copy": profile()})


def test_bases_of_two_families(tmp_path: Path) -> None:
    bases = {"a": {"family": "docs"}, "b": {"family": "code"}}
    error = load_fails(tmp_path, profile(extends=["a", "b"]), "PROFILE_FAMILY_MISMATCH", bases)
    assert error.details["families"] == {"a": "docs", "b": "code"}


def test_family_no_base_belongs_to(tmp_path: Path) -> None:
    error = load_fails(tmp_path, profile(family="docs"), "PROFILE_FAMILY_MISMATCH")
    assert error.details["declared"] == "docs"


def test_family_other_than_the_bases(tmp_path: Path) -> None:
    load_fails(
        tmp_path, profile(family="docs", extends=["a"]), "PROFILE_FAMILY_MISMATCH", {"a": {"family": "code"}}
    )


@pytest.mark.parametrize("extends", ["docs_family", [1], ["../escape"], ["a", "a"]])
def test_extends_that_is_not_a_list_of_identifiers(tmp_path: Path, extends: Any) -> None:
    error = load_fails(tmp_path, profile(extends=extends), "PROFILE_SCHEMA_INVALID", {"a": {}})
    assert error.details["fields"] == ["extends"]


def test_gate_rules_are_for_bases_only(tmp_path: Path) -> None:
    error = load_fails(
        tmp_path, profile(gate_rules={"docs_readme_final": {"max_drift": 0.1}}), "PROFILE_SCHEMA_INVALID"
    )
    assert error.details["fields"] == ["gate_rules"]


def test_a_family_default_the_gate_type_refuses(tmp_path: Path) -> None:
    bases = {"fam": {"gate_rules": {"schema_required_fields": {"no_such_rule": 1}}}}
    load_fails(tmp_path, profile(extends=["fam"]), "PROFILE_GATE_RULE_UNKNOWN", bases)


# --- wf profiles show --resolved ---------------------------------------------------------------


def test_describe_resolved_names_the_origin_of_every_field() -> None:
    shown = describe_resolved(builtin_docs_writer())
    assert shown["family"] == "docs_family"
    assert shown["code_version"] == DOCS_WRITER_CODE_VERSION
    rows = {row["field"]: row for row in shown["fields"]}
    assert rows["retention.preset"]["kind"] == "base" and rows["retention.preset"]["id"] == "docs_family"
    assert rows["retention.preset"]["path"].endswith("profiles/bases/docs_family.yaml")
    assert rows["gates.final_gate.rules.max_drift"] == {
        "field": "gates.final_gate.rules.max_drift",
        "value": 0.15,
        "kind": "base",
        "id": "docs_family",
        "layer": "builtin",
        "path": str(REPO_ROOT / "profiles" / "bases" / "docs_family.yaml"),
    }
    assert rows["turns.verification.prompt_ref"]["kind"] == "profile"
    assert all(row["kind"] is not None for row in shown["fields"])


def test_service_shows_and_validates_a_workspace_profile_extending_a_builtin_base(tmp_path: Path) -> None:
    workspace = layer_root(tmp_path / "ws", {"tiny": profile(extends=["docs_family"])})
    settings = Settings.from_env(
        {
            "WF_HOME": str(tmp_path / "home"),
            "WF_CONFIG_DIR": str(tmp_path / "cfg"),
            "WF_BUILTIN_ROOT": str(REPO_ROOT),
        }
    )
    shown = show_profile(settings, "tiny_flow", workspace, resolved=True)
    assert [(s["kind"], s["id"], s["layer"]) for s in shown["sources"]] == [
        ("base", "docs_family", "builtin"),
        ("profile", "tiny_flow", "workspace"),
    ]
    report = validate_profiles(settings, workspace / "profiles" / "tiny.yaml", workspace)
    assert report == {"valid": ["tiny_flow"], "invalid": []}


def test_cli_profiles_show_resolved(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(WF_HOME=str(tmp_path / "home"), WF_CONFIG_DIR=str(tmp_path / "cfg"), PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "wf_pipeline.cli.main", "profiles", "show", DOCS_WRITER, "--resolved"]
    shown = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    document = json.loads(shown.stdout)
    assert document["family"] == "docs_family"
    text = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in text.splitlines() if line.startswith("retention.preset"))
    assert line.split()[-3:] == ["builtin", "base", "docs_family"]
    assert str(REPO_ROOT / "profiles" / "bases" / "docs_family.yaml") in text
