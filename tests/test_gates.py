"""Gate registry and built-in evaluators: real parsing of JSON and markdown outputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from wf_pipeline.errors import GateError
from wf_pipeline.gates import FindingRule, GateResult, evaluate, gate_types, register, verdict_outcome
from wf_pipeline.gates.findings import output_pointer
from wf_pipeline.gates.generic import Heading, parse_headings, reason
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.workflows.docs_writer.gates import drift
from wf_pipeline.workflows.docs_writer.payloads import README_SECTIONS, ReadmeStruct


@dataclass(frozen=True)
class Spec:
    gate_type: str
    gate_id: str = "gate"
    required_fields: tuple[str, ...] = ()
    rules: Mapping[str, Any] = field(default_factory=dict)
    fail_on_violation: bool = True


def run(gate_type: str, output: str, inputs: Mapping[str, str] | None = None, **spec: Any) -> GateResult:
    return evaluate(Spec(gate_type, **spec), output, inputs or {})


def assert_fails_with(result: GateResult, *reasons: str) -> None:
    assert result.outcome == "fail"
    assert result.reasons == tuple(sorted(reasons))


def assert_passes(result: GateResult) -> None:
    assert result.outcome == "pass"
    assert result.reasons == ()


# --- fixtures: one target directory "pkg" -----------------------------------------------

CONFIG_PY = (
    "def load_config(path):\n"
    '    """Read the settings file."""\n'
    "    return Config.from_file(path)\n"
    "\n"
    "\n"
    "class Config:\n"
    "    @classmethod\n"
    "    def from_file(cls, path):\n"
    "        return cls()\n"
)
CONTEXT = ContextPayload(
    target=ContextTarget(path="pkg", name="pkg", node_id="node:" + "0" * 64),
    files=(
        ContextFile(
            path="pkg/config.py", name="config.py", size=len(CONFIG_PY), language="python", text=CONFIG_PY
        ),
        ContextFile(path="pkg/logo.png", name="logo.png", size=4096, omitted="binary"),
    ),
    children=(
        ContextChild(
            path="pkg/widgets",
            name="widgets",
            node_id="node:" + "1" * 64,
            head_frame="# widgets\n\nRenders widgets.\n",
        ),
        ContextChild(path="pkg/bare", name="bare", node_id="node:" + "2" * 64),
    ),
)
CONTEXT_TEXT = canonical_json(CONTEXT.to_json()).decode()


def claim(claim_id: str, **fields: Any) -> dict[str, Any]:
    base = {
        "claim_id": claim_id,
        "statement": "load_config reads the settings file",
        "evidence_path": "pkg/config.py",
        "evidence_symbol": "load_config",
    }
    return {**base, **fields}


def evidence_json(*claims: dict[str, Any]) -> str:
    return json.dumps({"claims": list(claims)})


GOOD_CLAIMS = (
    claim("c001", evidence_quote="return Config.from_file(path)"),
    claim(
        "c002",
        statement="Widgets are rendered by the widgets package.",
        evidence_path="pkg/widgets",
        evidence_symbol=None,
        evidence_quote="Renders widgets.",
    ),
    claim(
        "c003", statement="Config can be built from a file.", evidence_symbol="Config.from_file", kind="class"
    ),
)
EVIDENCE_TEXT = evidence_json(*GOOD_CLAIMS)


def report_json(verified: list[str], rejected: list[str], reasons: dict[str, str] | None = None) -> str:
    return json.dumps({"verified_claims": verified, "rejected_claims": rejected, "reasons": reasons or {}})


STRUCT = {
    "title": "pkg",
    "purpose": "Loads configuration for the application.",
    "api_surface": "`load_config(path)` reads the settings file.",
    "usage": "Call `load_config` with a path.",
}
STRUCT_TEXT = json.dumps(STRUCT)


def render(struct: Mapping[str, str]) -> str:
    """The canonical markdown form of a ReadmeStruct."""
    parsed = ReadmeStruct.model_validate(struct)
    text = f"# {parsed.title}\n\n"
    for key, body in parsed.sections().items():
        text += f"## {README_SECTIONS[key]}\n\n{body.strip()}\n\n"
    return text.rstrip("\n") + "\n"


# --- registry -------------------------------------------------------------------------


def test_gate_types_lists_all_builtin_gates() -> None:
    assert gate_types() >= {
        "schema_required_fields",
        "required_sections",
        "no_semantic_drift",
        "docs_evidence_map",
        "docs_verification_report",
        "docs_readme_struct",
        "docs_readme_final",
    }


def test_unknown_gate_type_is_an_error() -> None:
    with pytest.raises(GateError) as raised:
        run("no_such_gate", "{}")
    assert raised.value.code == "GATE_UNKNOWN_TYPE"


def test_registering_a_builtin_type_again_is_an_error() -> None:
    gate_types()
    with pytest.raises(GateError) as raised:
        register("docs_readme_final")(lambda output_text, inputs, spec: [])
    assert raised.value.code == "GATE_DUPLICATE_TYPE"


def test_fail_on_violation_false_warns_and_keeps_reasons() -> None:
    result = run("schema_required_fields", "{}", required_fields=("title",), fail_on_violation=False)
    assert result.outcome == "warn"
    assert not result.passed and not result.blocks
    assert result.reasons == ("FIELD_MISSING:title",)
    # The same output under a blocking declaration fails; a clean output passes either way.
    assert run("schema_required_fields", "{}", required_fields=("title",)).blocks
    clean = run(
        "schema_required_fields", '{"title": "t"}', required_fields=("title",), fail_on_violation=False
    )
    assert clean.outcome == "pass" and clean.passed


_ADVISORY = {
    "LOOK_AGAIN": FindingRule("advice", output_pointer, "Worth a second look.", blocking=False),
    "BROKEN": FindingRule("broken", output_pointer, "Broken."),
}


@pytest.mark.parametrize(
    ("reasons", "fail_on_violation", "outcome"),
    [
        ((), True, "pass"),
        ((), False, "pass"),
        (("LOOK_AGAIN",), True, "warn"),
        (("LOOK_AGAIN", "BROKEN"), True, "fail"),
        (("LOOK_AGAIN", "BROKEN"), False, "warn"),
        (("BROKEN:x",), True, "fail"),
        # A code no table names blocks: an unmapped reason never passes unnoticed.
        (("NOBODY_KNOWS",), True, "fail"),
        (("FIELD_MISSING:title",), True, "fail"),
    ],
)
def test_reasons_become_pass_warn_or_fail_in_one_place(reasons, fail_on_violation, outcome) -> None:
    assert verdict_outcome(reasons, _ADVISORY, fail_on_violation) == outcome


def test_a_gate_type_with_a_non_blocking_finding_warns_through_evaluate() -> None:
    def advisory(output_text: str, inputs: Mapping[str, str], spec: Any) -> list[str]:
        return [code for code in output_text.split() if code in _ADVISORY]

    register("test_advisory_gate", findings=_ADVISORY)(advisory)
    warned = run("test_advisory_gate", "LOOK_AGAIN")
    assert (warned.outcome, warned.reasons) == ("warn", ("LOOK_AGAIN",))
    assert [f.rule_id for f in warned.findings] == ["advice"]
    assert run("test_advisory_gate", "LOOK_AGAIN BROKEN").outcome == "fail"
    assert run("test_advisory_gate", "").outcome == "pass"


def test_result_carries_gate_id() -> None:
    assert run("schema_required_fields", "{}", gate_id="struct_gate").gate_id == "struct_gate"


@pytest.mark.parametrize(
    ("gate_type", "output", "inputs"),
    [
        (
            "docs_evidence_map",
            evidence_json(claim("c9", evidence_path="x"), claim("c1", evidence_path="y")),
            {"context": CONTEXT_TEXT},
        ),
        (
            "docs_verification_report",
            report_json(["zz", "aa"], ["c001", "c002"], {"c001": "bad"}),
            {"evidence_map": EVIDENCE_TEXT},
        ),
        ("docs_readme_final", "intro\n## Evidence\n## Claims\n", {"readme_struct": STRUCT_TEXT}),
    ],
)
def test_reasons_are_deterministic_sorted_and_unique(
    gate_type: str, output: str, inputs: dict[str, str]
) -> None:
    first = run(gate_type, output, inputs)
    second = run(gate_type, output, dict(inputs))
    assert first == second
    assert first.reasons
    assert list(first.reasons) == sorted(set(first.reasons))


# --- markdown headings ----------------------------------------------------------------


def test_parse_headings_follows_atx_rules() -> None:
    text = (
        "# Title #\n"
        "#NoSpace\n"
        "####### seven\n"
        "    # indented code\n"
        "   ### three spaces\n"
        "## Closing ## \n"
        "## C#\n"
        "#\n"
        "text with ## Usage inside\n"
    )
    assert [(h.level, h.text) for h in parse_headings(text)] == [
        (1, "Title"),
        (3, "three spaces"),
        (2, "Closing"),
        (2, "C#"),
        (1, ""),
    ]


def test_parse_headings_skips_fenced_code() -> None:
    text = (
        "## Before\r\n"
        "```markdown\r\n"
        "## Inside backticks\r\n"
        "```\r\n"
        "~~~~\n"
        "## Inside tildes\n"
        "~~~\n"  # shorter than the opening fence: does not close it
        "```\n"  # other fence character: does not close it
        "## Still inside\n"
        "~~~~~\n"
        "## After\n"
        "``` not `a fence\n"  # backtick in the info string: inline code, not a fence
        "## Last\n"
    )
    assert parse_headings(text) == [
        Heading(level=2, text="Before", line=0),
        Heading(level=2, text="After", line=10),
        Heading(level=2, text="Last", line=12),
    ]


def test_unclosed_fence_hides_the_rest() -> None:
    assert [h.text for h in parse_headings("# A\n```\n## B\n")] == ["A"]


# --- schema_required_fields -----------------------------------------------------------


def test_required_fields_pass_when_present_and_non_empty() -> None:
    output = json.dumps({"title": "x", "count": 0, "flag": False, "items": [1], "nested": {"a": 1}})
    assert_passes(
        run("schema_required_fields", output, required_fields=("title", "count", "flag", "items", "nested"))
    )


def test_required_fields_missing_and_empty() -> None:
    output = json.dumps({"a": "", "b": "  ", "c": [], "d": {}, "e": None, "f": "ok"})
    result = run("schema_required_fields", output, required_fields=("a", "b", "c", "d", "e", "f", "g"))
    assert_fails_with(
        result,
        "FIELD_EMPTY:a",
        "FIELD_EMPTY:b",
        "FIELD_EMPTY:c",
        "FIELD_EMPTY:d",
        "FIELD_EMPTY:e",
        "FIELD_MISSING:g",
    )


@pytest.mark.parametrize(
    "output", ['"claims" evidence_path title', "[1, 2]", '"title"', "", '```json\n{"title": "x"}\n```']
)
def test_required_fields_need_a_json_object(output: str) -> None:
    assert_fails_with(
        run("schema_required_fields", output, required_fields=("claims", "title")), "OUTPUT_NOT_JSON"
    )


# --- required_sections ----------------------------------------------------------------


def test_required_sections_pass_for_keys_and_heading_texts() -> None:
    output = "# T\n\n## API surface\n\nx\n\n### Install:\n\ny\n"
    assert_passes(run("required_sections", output, rules={"sections": ["api_surface", "Install"]}))


def test_required_sections_missing_section() -> None:
    output = "# T\n\nSee ## Usage below.\n\n```\n## Usage\n```\n\n## Install\n"
    result = run("required_sections", output, rules={"sections": ["usage", "Install", "Getting started"]})
    assert_fails_with(result, "SECTION_MISSING:getting_started", "SECTION_MISSING:usage")


def test_required_sections_level_rule() -> None:
    output = "# T\n\n### Usage\n"
    assert_passes(run("required_sections", output, rules={"sections": ["usage"]}))
    result = run("required_sections", output, rules={"sections": ["usage"], "level": 2})
    assert_fails_with(result, "SECTION_MISSING:usage")


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"sections": []},
        {"sections": "usage"},
        {"sections": ["usage", ""]},
        {"sections": ["usage"], "level": 7},
        {"sections": ["usage"], "level": True},
    ],
)
def test_required_sections_bad_rules_are_an_error(rules: dict[str, Any]) -> None:
    with pytest.raises(GateError) as raised:
        run("required_sections", "# T\n", rules=rules)
    assert raised.value.code == "GATE_RULES_INVALID"


# --- drift ----------------------------------------------------------------------------

DRIFT_STRUCT = {"title": "T", "purpose": "alpha beta gamma delta", "usage": "run alpha", "caveats": "   "}
DRIFT_FINAL = "# T\n\n## Purpose\n\nalpha beta\n\n## Usage\n\nrun\n"


def test_drift_counts_missing_tokens_as_a_multiset() -> None:
    # struct tokens: alpha x2, beta, gamma, delta, run; the final lacks one alpha, gamma, delta.
    assert drift(ReadmeStruct.model_validate(DRIFT_STRUCT), DRIFT_FINAL) == pytest.approx(0.5)
    assert drift(ReadmeStruct.model_validate(DRIFT_STRUCT), "ALPHA alpha Beta gamma delta run") == 0.0


def test_drift_ignores_headings_of_the_struct() -> None:
    # The title and section headings are not struct body tokens, so their absence is no drift.
    assert drift(ReadmeStruct.model_validate({"title": "Widget", "usage": "run it"}), "run it") == 0.0
    assert drift(ReadmeStruct(title="Only a title"), "") == 0.0


def test_no_semantic_drift_fails_above_threshold() -> None:
    result = run("no_semantic_drift", DRIFT_FINAL, {"readme_struct": json.dumps(DRIFT_STRUCT)})
    assert_fails_with(result, "DRIFT_ABOVE_THRESHOLD:0.500>0.15")


def test_no_semantic_drift_respects_max_drift_rule() -> None:
    inputs = {"readme_struct": json.dumps(DRIFT_STRUCT)}
    assert_passes(run("no_semantic_drift", DRIFT_FINAL, inputs, rules={"max_drift": 0.5}))
    assert_fails_with(
        run("no_semantic_drift", DRIFT_FINAL, inputs, rules={"max_drift": 0.4}),
        "DRIFT_ABOVE_THRESHOLD:0.500>0.4",
    )


def test_no_semantic_drift_passes_for_the_canonical_render() -> None:
    assert_passes(run("no_semantic_drift", render(STRUCT), {"readme_struct": STRUCT_TEXT}))


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, "GATE_INPUT_MISSING:readme_struct"),
        ({"readme_struct": "usage: run"}, "GATE_INPUT_INVALID:readme_struct"),
        (
            {"readme_struct": json.dumps({"title": "T", "evidence_map": "x"})},
            "GATE_INPUT_INVALID:readme_struct",
        ),
    ],
)
def test_no_semantic_drift_needs_a_valid_struct(inputs: dict[str, str], expected: str) -> None:
    assert_fails_with(run("no_semantic_drift", DRIFT_FINAL, inputs), expected)


@pytest.mark.parametrize("max_drift", ["0.2", True, -0.1, 1.5])
def test_bad_max_drift_is_an_error(max_drift: Any) -> None:
    for gate_type in ("no_semantic_drift", "docs_readme_final"):
        with pytest.raises(GateError) as raised:
            run(gate_type, DRIFT_FINAL, {"readme_struct": STRUCT_TEXT}, rules={"max_drift": max_drift})
        assert raised.value.code == "GATE_RULES_INVALID"


# --- docs_evidence_map ----------------------------------------------------------------


def evidence_gate(output: str, inputs: Mapping[str, str] | None = None, **spec: Any) -> GateResult:
    return run("docs_evidence_map", output, {"context": CONTEXT_TEXT} if inputs is None else inputs, **spec)


def test_evidence_map_passes_when_evidence_is_real() -> None:
    assert_passes(evidence_gate(EVIDENCE_TEXT))


@pytest.mark.parametrize(
    "output", ['"claims" evidence_path evidence_quote', "[]", "```json\n" + EVIDENCE_TEXT + "\n```"]
)
def test_evidence_map_field_names_in_text_do_not_count(output: str) -> None:
    assert_fails_with(evidence_gate(output), "OUTPUT_NOT_JSON")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            evidence_json({"claim_id": "c1", "evidence_path": "pkg/config.py", "evidence_symbol": "Config"}),
            ["OUTPUT_SCHEMA_VIOLATION:claims.0.statement"],
        ),
        (evidence_json(claim("c1", evidence_symbol=None)), ["OUTPUT_SCHEMA_VIOLATION:claims.0"]),
        (
            evidence_json(claim("c1", evidence_symbol="", evidence_quote="")),
            ["OUTPUT_SCHEMA_VIOLATION:claims.0"],
        ),
        (json.dumps({"claims": [claim("c1")], "notes": "x"}), ["OUTPUT_SCHEMA_VIOLATION:notes"]),
        (json.dumps({}), ["OUTPUT_SCHEMA_VIOLATION:claims"]),
    ],
)
def test_evidence_map_schema_violations(output: str, expected: list[str]) -> None:
    assert_fails_with(evidence_gate(output), *expected)


def test_evidence_map_empty() -> None:
    assert_fails_with(evidence_gate(evidence_json()), "EVIDENCE_MAP_EMPTY")


def test_evidence_map_duplicate_ids() -> None:
    assert_fails_with(
        evidence_gate(evidence_json(*GOOD_CLAIMS, GOOD_CLAIMS[0], GOOD_CLAIMS[1])),
        "CLAIM_DUPLICATE_ID:c001",
        "CLAIM_DUPLICATE_ID:c002",
    )


@pytest.mark.parametrize("path", ["pkg/missing.py", "config.py", "./pkg/config.py", "pkg", "other/config.py"])
def test_evidence_map_path_must_be_in_target(path: str) -> None:
    assert_fails_with(
        evidence_gate(evidence_json(claim("c001", evidence_path=path))), "CLAIM_PATH_NOT_IN_TARGET:c001"
    )


def test_evidence_map_cannot_cite_omitted_file() -> None:
    output = evidence_json(claim("c001", evidence_path="pkg/logo.png", evidence_symbol="logo"))
    assert_fails_with(evidence_gate(output), "CLAIM_CITES_OMITTED_FILE:c001")


def test_evidence_map_quote_must_occur() -> None:
    output = evidence_json(
        claim("c001", evidence_quote="return Config.from_yaml(path)"),
        claim("c002", evidence_quote="   "),
        claim("c003", evidence_path="pkg/widgets", evidence_symbol=None, evidence_quote="Draws widgets."),
        claim("c004", evidence_path="pkg/bare", evidence_symbol=None, evidence_quote="anything"),
    )
    assert_fails_with(
        evidence_gate(output),
        "CLAIM_QUOTE_NOT_FOUND:c001",
        "CLAIM_QUOTE_NOT_FOUND:c002",
        "CLAIM_QUOTE_NOT_FOUND:c003",
        "CLAIM_QUOTE_NOT_FOUND:c004",
    )


def test_evidence_map_quote_tolerates_rewrapped_whitespace() -> None:
    rewrapped = 'def load_config(path):\n  """Read the settings file."""'
    output = evidence_json(claim("c001", evidence_quote=rewrapped))
    assert_passes(evidence_gate(output))


@pytest.mark.parametrize("symbol", ["load", "Settings", "Config.load", "config", "   ", "Config.from_file.x"])
def test_evidence_map_symbol_must_occur_as_a_whole_name(symbol: str) -> None:
    output = evidence_json(claim("c001", evidence_symbol=symbol))
    assert_fails_with(evidence_gate(output), "CLAIM_SYMBOL_NOT_FOUND:c001")


@pytest.mark.parametrize(
    "symbol", ["load_config", "load_config()", "Config", "Config.from_file", " from_file "]
)
def test_evidence_map_symbol_found(symbol: str) -> None:
    assert_passes(evidence_gate(evidence_json(claim("c001", evidence_symbol=symbol))))


def test_evidence_map_checks_symbol_and_quote_independently() -> None:
    output = evidence_json(claim("c001", evidence_symbol="missing_name", evidence_quote="nowhere to be seen"))
    assert_fails_with(evidence_gate(output), "CLAIM_QUOTE_NOT_FOUND:c001", "CLAIM_SYMBOL_NOT_FOUND:c001")


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, "GATE_INPUT_MISSING:context"),
        ({"context": "pkg/config.py"}, "GATE_INPUT_INVALID:context"),
        (
            {"context": json.dumps({"schema": "wf.context.v0", "target": CONTEXT.target.model_dump()})},
            "GATE_INPUT_INVALID:context",
        ),
    ],
)
def test_evidence_map_needs_a_valid_context(inputs: dict[str, str], expected: str) -> None:
    assert_fails_with(evidence_gate(EVIDENCE_TEXT, inputs), expected)
    # Output problems are still reported next to the input problem.
    assert_fails_with(evidence_gate(evidence_json(), inputs), expected, "EVIDENCE_MAP_EMPTY")


def test_evidence_map_required_fields_apply() -> None:
    assert_passes(evidence_gate(EVIDENCE_TEXT, required_fields=("claims",)))
    result = evidence_gate(evidence_json(), required_fields=("claims",))
    assert_fails_with(result, "EVIDENCE_MAP_EMPTY", "FIELD_EMPTY:claims")


@pytest.mark.parametrize(
    "leaky_id",
    [
        "see the secret plan: " + "x" * 200,
        "RESPONSECANARY" + "7f3a" * 4,
        "AKIA" + "Q" * 16,
        "seethesecretplan2",
    ],
)
def test_reasons_never_carry_payload_text(leaky_id: str) -> None:
    result = evidence_gate(evidence_json(claim(leaky_id, evidence_path="nowhere")))
    (only,) = result.reasons
    # A model-chosen id that is not id-shaped is named by its digest, never by its text.
    assert only == "CLAIM_PATH_NOT_IN_TARGET:h-" + hashlib.sha256(leaky_id.encode()).hexdigest()[:12]


def test_reasons_keep_field_paths_short_ids_and_figures() -> None:
    assert reason("OUTPUT_SCHEMA_VIOLATION", "claims.0.evidence_quote") == (
        "OUTPUT_SCHEMA_VIOLATION:claims.0.evidence_quote"
    )
    assert reason("UNKNOWN_CLAIM_ID", "c404") == "UNKNOWN_CLAIM_ID:c404"
    assert reason("FIELD_MISSING", "<root>") == "FIELD_MISSING:<root>"
    assert reason("DRIFT_ABOVE_THRESHOLD", "0.412>0.3") == "DRIFT_ABOVE_THRESHOLD:0.412>0.3"


# --- docs_verification_report ---------------------------------------------------------


def verification_gate(output: str, inputs: Mapping[str, str] | None = None) -> GateResult:
    inputs = {"context": CONTEXT_TEXT, "evidence_map": EVIDENCE_TEXT} if inputs is None else inputs
    return run("docs_verification_report", output, inputs)


def test_verification_passes() -> None:
    assert_passes(verification_gate(report_json(["c001", "c003"], ["c002"], {"c002": "EVIDENCE_NOT_FOUND"})))
    assert_passes(verification_gate(report_json(["c001", "c002", "c003"], [])))


def test_verification_needs_a_verified_claim() -> None:
    output = report_json([], ["c001", "c002", "c003"], {"c001": "X", "c002": "X", "c003": "X"})
    assert_fails_with(verification_gate(output), "NO_VERIFIED_CLAIMS")


def test_verification_rejection_needs_a_reason() -> None:
    output = report_json(["c001"], ["c002", "c003"], {"c003": "  "})
    assert_fails_with(
        verification_gate(output), "REJECTION_WITHOUT_REASON:c002", "REJECTION_WITHOUT_REASON:c003"
    )


@pytest.mark.parametrize(
    "code", ["not found", "Evidence_missing", "EVIDENCE__MISSING", "_EVIDENCE", "EVIDENCE-MISSING"]
)
def test_verification_reason_must_be_upper_snake(code: str) -> None:
    output = report_json(["c001", "c003"], ["c002"], {"c002": code})
    assert_fails_with(verification_gate(output), "INVALID_REASON_CODE:c002")


def test_verification_claim_in_both_sets() -> None:
    output = report_json(["c001", "c002", "c003"], ["c002"], {"c002": "WEAK_EVIDENCE"})
    assert_fails_with(verification_gate(output), "CLAIM_IN_BOTH_SETS:c002")


def test_verification_unknown_claim_ids() -> None:
    output = report_json(["c001", "c002", "c003", "c404"], ["c405"], {"c405": "NO_SUCH", "c406": "NO_SUCH"})
    expected = ("UNKNOWN_CLAIM_ID:c404", "UNKNOWN_CLAIM_ID:c405", "UNKNOWN_CLAIM_ID:c406")
    assert_fails_with(verification_gate(output), *expected)


def test_verification_every_claim_is_classified() -> None:
    result = verification_gate(report_json(["c001"], []))
    assert_fails_with(result, "UNCLASSIFIED_CLAIM:c002", "UNCLASSIFIED_CLAIM:c003")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('"verified_claims" "rejected_claims"', "OUTPUT_NOT_JSON"),
        (json.dumps({"rejected_claims": []}), "OUTPUT_SCHEMA_VIOLATION:verified_claims"),
        (
            json.dumps({"verified_claims": ["c001"], "rejected_claims": [], "reasons": {"c002": 7}}),
            "OUTPUT_SCHEMA_VIOLATION:reasons.c002",
        ),
    ],
)
def test_verification_parses_strictly(output: str, expected: str) -> None:
    assert_fails_with(verification_gate(output), expected)


def test_verification_needs_a_valid_evidence_map() -> None:
    output = report_json(["c001", "c002", "c003"], [])
    assert_fails_with(verification_gate(output, {"context": CONTEXT_TEXT}), "GATE_INPUT_MISSING:evidence_map")
    assert_fails_with(
        verification_gate(report_json([], []), {"evidence_map": "claims: []"}),
        "GATE_INPUT_INVALID:evidence_map",
        "NO_VERIFIED_CLAIMS",
    )


# --- docs_readme_struct ---------------------------------------------------------------

REJECTING_REPORT = report_json(["c001", "c003"], ["c002"], {"c002": "EVIDENCE_NOT_FOUND"})


def struct_gate(output: str, inputs: Mapping[str, str] | None = None) -> GateResult:
    inputs = (
        {"evidence_map": EVIDENCE_TEXT, "verification_report": REJECTING_REPORT} if inputs is None else inputs
    )
    return run("docs_readme_struct", output, inputs)


def test_struct_passes_with_verified_statements() -> None:
    # c001's and c003's statements are verified, so they may appear.
    struct = {**STRUCT, "behavior_notes": "Config can be built from a file."}
    assert_passes(struct_gate(json.dumps(struct)))


def test_struct_rejected_statement_is_found_regardless_of_case_and_wrapping() -> None:
    struct = {
        **STRUCT,
        "related_components": "Note: widgets are rendered\n  by the WIDGETS package, see below.",
    }
    assert_fails_with(struct_gate(json.dumps(struct)), "REJECTED_CLAIM_TEXT:c002")


def test_struct_rejected_statement_in_title() -> None:
    struct = {**STRUCT, "title": "Widgets are rendered by the widgets package"}
    assert_fails_with(struct_gate(json.dumps(struct)), "REJECTED_CLAIM_TEXT:c002")


def test_struct_punctuation_only_statement_matches_nothing() -> None:
    evidence = evidence_json(*GOOD_CLAIMS, claim("c004", statement=" ... "))
    report = report_json(["c001", "c002", "c003"], ["c004"], {"c004": "EMPTY_STATEMENT"})
    assert_passes(struct_gate(STRUCT_TEXT, {"evidence_map": evidence, "verification_report": report}))


@pytest.mark.parametrize(
    ("struct", "expected"),
    [
        ({**STRUCT, "evidence_map": "c001: ..."}, "OUTPUT_SCHEMA_VIOLATION:evidence_map"),
        ({**STRUCT, "claims": []}, "OUTPUT_SCHEMA_VIOLATION:claims"),
        ({**STRUCT, "title": ""}, "OUTPUT_SCHEMA_VIOLATION:title"),
        ({key: value for key, value in STRUCT.items() if key != "title"}, "OUTPUT_SCHEMA_VIOLATION:title"),
        ({**STRUCT, "title": "   "}, "TITLE_MISSING"),
    ],
)
def test_struct_schema_and_title(struct: dict[str, Any], expected: str) -> None:
    assert_fails_with(struct_gate(json.dumps(struct)), expected)


def test_struct_field_names_in_text_do_not_count() -> None:
    assert_fails_with(struct_gate('"title": "pkg", "purpose": "x"'), "OUTPUT_NOT_JSON")


def test_struct_section_body_may_not_hold_an_evidence_heading() -> None:
    struct = {**STRUCT, "caveats": "Mind the gap.\n\n### Evidence map\n\n- c001\n"}
    assert_fails_with(struct_gate(json.dumps(struct)), "EVIDENCE_HEADING_PRESENT:evidence_map")
    fenced = {**STRUCT, "caveats": "Example:\n\n```\n### Evidence map\n```\n"}
    assert_passes(struct_gate(json.dumps(fenced)))


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"evidence_map": EVIDENCE_TEXT}, ["GATE_INPUT_MISSING:verification_report"]),
        ({"verification_report": REJECTING_REPORT}, ["GATE_INPUT_MISSING:evidence_map"]),
        (
            {"evidence_map": "{}", "verification_report": "[]"},
            ["GATE_INPUT_INVALID:evidence_map", "GATE_INPUT_INVALID:verification_report"],
        ),
    ],
)
def test_struct_needs_valid_inputs(inputs: dict[str, str], expected: list[str]) -> None:
    assert_fails_with(struct_gate(STRUCT_TEXT, inputs), *expected)


# --- docs_readme_final ----------------------------------------------------------------


def final_gate(output: str, struct: Mapping[str, str] = STRUCT, **spec: Any) -> GateResult:
    return run("docs_readme_final", output, {"readme_struct": json.dumps(struct)}, **spec)


def test_final_passes_for_the_canonical_render() -> None:
    assert_passes(final_gate(render(STRUCT)))
    assert_passes(final_gate("\n\n" + render(STRUCT) + "\n## Extra notes\n\nMore.\n"))


@pytest.mark.parametrize(
    "output",
    [
        "## pkg\n\n" + render(STRUCT).split("\n", 1)[1],
        "#pkg\n" + render(STRUCT).split("\n", 1)[1],
        "Intro line.\n\n" + render(STRUCT),
        "```\n# pkg\n```\n" + render(STRUCT).split("\n", 1)[1],
        "",
    ],
)
def test_final_must_start_with_the_title_heading(output: str) -> None:
    assert "TITLE_MISSING" in final_gate(output).reasons


def test_final_title_must_match_the_struct() -> None:
    assert_fails_with(final_gate(render(STRUCT).replace("# pkg\n", "# Package\n", 1)), "TITLE_MISMATCH")
    assert_fails_with(final_gate(render(STRUCT).replace("# pkg\n", "# PKG\n", 1)), "TITLE_MISMATCH")
    assert_passes(final_gate(render(STRUCT).replace("# pkg\n", "#   pkg  #\n", 1)))


def test_final_section_must_be_a_level_two_heading_outside_fences() -> None:
    base = render(STRUCT)
    usage_body = "Call `load_config` with a path."
    fenced = base.replace("## Usage\n", "```\n## Usage\n```\n")
    assert_fails_with(final_gate(fenced), "SECTION_MISSING:usage")
    assert_fails_with(final_gate(base.replace("## Usage\n", "### Usage\n")), "SECTION_MISSING:usage")
    assert_fails_with(final_gate(base.replace("## Usage\n", "Usage\n")), "SECTION_MISSING:usage")
    assert usage_body in fenced  # the words survive, only the heading is gone


def test_final_only_requires_non_empty_struct_sections() -> None:
    struct = {**STRUCT, "caveats": "  \n", "scope": None}
    assert_passes(final_gate(render(STRUCT), struct))


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("## Evidence map", "evidence_map"),
        ("### claims", "claims"),
        ("# Evidence:", "evidence"),
        ("#### evidence_map", "evidence_map"),
    ],
)
def test_final_may_not_add_an_evidence_heading(heading: str, slug: str) -> None:
    output = render(STRUCT) + f"\n{heading}\n\n- c001\n"
    assert_fails_with(final_gate(output), f"EVIDENCE_HEADING_PRESENT:{slug}")


def test_final_evidence_words_outside_headings_are_fine() -> None:
    output = render(STRUCT) + "\nThe evidence map is internal.\n\n```\n## Evidence map\n```\n"
    assert_passes(final_gate(output))


def test_final_drift() -> None:
    assert_fails_with(final_gate(DRIFT_FINAL, DRIFT_STRUCT), "DRIFT_ABOVE_THRESHOLD:0.500>0.15")
    assert_passes(final_gate(DRIFT_FINAL, DRIFT_STRUCT, rules={"max_drift": 0.5}))


def test_final_needs_a_valid_struct() -> None:
    result = run("docs_readme_final", render(STRUCT) + "## Claims\n", {})
    assert_fails_with(result, "EVIDENCE_HEADING_PRESENT:claims", "GATE_INPUT_MISSING:readme_struct")
    result = run("docs_readme_final", render(STRUCT), {"readme_struct": render(STRUCT)})
    assert_fails_with(result, "GATE_INPUT_INVALID:readme_struct")
