"""The shipped docs_writer_thread_v1 profile and its prompts."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.profiles import Layer, LoadedProfile, default_layers, load_catalog, render_prompt
from wf_pipeline.settings import Settings
from wf_pipeline.workflows.docs_writer.payloads import (
    README_SECTIONS,
    Claim,
    ClaimKind,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_ID = "docs_writer_thread_v1"


@pytest.fixture(scope="module")
def shipped() -> LoadedProfile:
    settings = Settings.from_env({"WF_HOME": "/nonexistent-wf-home", "WF_BUILTIN_ROOT": str(REPO_ROOT)})
    return load_catalog([Layer("builtin", settings.builtin_root)]).get(WORKFLOW_ID)


def test_shipped_profile_comes_from_the_builtin_layer(tmp_path: Path) -> None:
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home")})
    assert settings.builtin_root == REPO_ROOT
    layers = default_layers(
        settings, tmp_path / "empty_workspace", env={"WF_CONFIG_DIR": str(tmp_path / "cfg")}
    )
    loaded = load_catalog(layers).get(WORKFLOW_ID)
    assert loaded.layer == "builtin"
    assert loaded.source_path == REPO_ROOT / "profiles" / "docs_writer_thread_v1.yaml"


def test_shipped_profile_declares_the_four_turns_and_gates(shipped: LoadedProfile) -> None:
    profile = shipped.profile
    turns = [
        (t.seq, t.turn_id, t.input_refs, t.output_type, t.output_format, t.gate_id, t.retry_limit)
        for t in profile.ordered_turns()
    ]
    assert turns == [
        (1, "evidence_gather", ["context"], "evidence_map", "json", "evidence_gate", 1),
        (
            2,
            "verification",
            ["context", "evidence_map"],
            "verification_report",
            "json",
            "verification_gate",
            1,
        ),
        (
            3,
            "readme_struct",
            ["context", "evidence_map", "verification_report"],
            "readme_struct",
            "json",
            "struct_gate",
            1,
        ),
        (4, "style_refine", ["readme_struct"], "readme_final", "markdown", "final_gate", 1),
    ]
    assert {g.gate_id: g.gate_type for g in profile.gates} == {
        "evidence_gate": "docs_evidence_map",
        "verification_gate": "docs_verification_report",
        "struct_gate": "docs_readme_struct",
        "final_gate": "docs_readme_final",
    }
    assert profile.gate("final_gate").rules == {"max_drift": 0.15}
    assert all(g.fail_on_violation for g in profile.gates)
    assert profile.target_frame_type == "readme"
    assert profile.final_artifact_type == "readme_final"
    assert profile.artifact_policy.model_dump() == {
        "store_output": True,
        "store_prompt_render": True,
        "store_context_payload": True,
        "max_output_bytes": 262_144,
        "max_prompt_bytes": 1_048_576,
        "max_context_bytes": 393_216,
        "max_context_tokens": None,
        "tokenizer": None,
    }
    assert profile.failure_policy.mode == "stop_on_gate_fail"
    for turn in profile.turns:
        assert turn.prompt_ref == f"assets/prompts/docs_writer/{turn.turn_id}.md"
        assert turn.system_prompt_ref == "assets/prompts/docs_writer/system.md"
    assert re.fullmatch(r"1\.0\.0-[0-9a-f]{12}", shipped.code_version)


def sample_inputs() -> dict[str, str]:
    context = ContextPayload(
        target=ContextTarget(path="pkg", name="pkg", node_id="node:" + "a" * 64),
        files=(
            ContextFile(
                path="pkg/cli.py",
                name="cli.py",
                size=40,
                language="python",
                text="def main():\n    return 0\n",
            ),
            ContextFile(path="pkg/logo.png", name="logo.png", size=9000, omitted="binary"),
        ),
        children=(
            ContextChild(path="pkg/util", name="util", node_id="node:" + "b" * 64, head_frame="# util\n"),
        ),
    )
    evidence = EvidenceMap(
        claims=(
            Claim(
                claim_id="c001",
                statement="The CLI entry point is main.",
                evidence_path="pkg/cli.py",
                evidence_symbol="main",
            ),
        )
    )
    report = VerificationReport(verified_claims=("c001",), rejected_claims=())
    struct = ReadmeStruct(title="pkg", purpose="The CLI entry point is main.")
    return {
        "context": canonical_json(context.to_json()).decode(),
        "evidence_map": evidence.model_dump_json(exclude_none=True),
        "verification_report": report.model_dump_json(),
        "readme_struct": struct.model_dump_json(exclude_none=True),
    }


def test_every_shipped_prompt_renders_with_its_inputs(shipped: LoadedProfile) -> None:
    available = sample_inputs()
    for turn in shipped.profile.ordered_turns():
        inputs = {ref: available[ref] for ref in turn.input_refs}
        variables = {
            "workflow_id": WORKFLOW_ID,
            "turn_id": turn.turn_id,
            "target_path": "pkg",
            "target_name": "pkg",
            "inputs": inputs,
        }
        rendered = render_prompt(shipped.templates[turn.turn_id], variables)
        assert "`pkg`" in rendered
        for text in inputs.values():
            assert text in rendered
        system = shipped.system_prompts[turn.turn_id]
        assert system is not None and render_prompt(system, variables) == system.text


def prompt_text(shipped: LoadedProfile, turn_id: str) -> str:
    return shipped.templates[turn_id].text


def test_json_prompts_name_every_field_of_their_output_model(shipped: LoadedProfile) -> None:
    expected = {
        "evidence_gather": ["claims", *Claim.model_fields],
        "verification": list(VerificationReport.model_fields),
        "readme_struct": list(ReadmeStruct.model_fields),
    }
    for turn_id, fields in expected.items():
        text = prompt_text(shipped, turn_id)
        missing = [name for name in fields if f"`{name}`" not in text]
        assert missing == [], (turn_id, missing)
        assert "single JSON object" in text
    kinds = typing.get_args(ClaimKind)
    assert all(f'"{kind}"' in prompt_text(shipped, "evidence_gather") for kind in kinds)


def test_json_prompt_examples_parse_as_their_models(shipped: LoadedProfile) -> None:
    """Each JSON prompt ends with an example line of the exact output shape."""
    for turn_id, model in (
        ("evidence_gather", EvidenceMap),
        ("verification", VerificationReport),
        ("readme_struct", ReadmeStruct),
    ):
        example = next(line for line in prompt_text(shipped, turn_id).splitlines() if line.startswith('{"'))
        assert model.model_validate(json.loads(example)) is not None  # raises when the shape is wrong


def test_style_prompt_names_every_readme_heading_in_order(shipped: LoadedProfile) -> None:
    text = prompt_text(shipped, "style_refine")
    positions = [text.index(f'`{key}`: "## {heading}"') for key, heading in README_SECTIONS.items()]
    assert positions == sorted(positions)
