"""Gate diagnostics and thresholds: findings per reason, typed rules checked at load, rules in the
code version, and the findings where users look (records, `wf threads show`, `wf gates explain`,
the Dagster check metadata)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetCheckKey, AssetKey
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree
from test_cli import WORKFLOW, make_sandbox
from test_gates import (
    CONTEXT_TEXT,
    EVIDENCE_TEXT,
    GOOD_CLAIMS,
    REJECTING_REPORT,
    STRUCT,
    claim,
    evidence_json,
    render,
    report_json,
    run,
)

import wf_pipeline.gates.generic as generic_gates
import wf_pipeline.workflows.docs_writer.gates as docs_gates
from wf_pipeline.errors import GateError, ProfileError
from wf_pipeline.gates import evaluate, gate_types, rules_digest
from wf_pipeline.gates.findings import GENERIC_FINDINGS, UNMAPPED_RULE
from wf_pipeline.profiles import load_profile_file
from wf_pipeline.workflows import load_builtin_workflows

SHIPPED = REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml"


def findings(result) -> list[tuple[str, str, str]]:
    return [(f.rule_id, f.code, f.pointer) for f in result.findings]


# --- findings of real failing outputs ----------------------------------------------------


def test_evidence_findings_point_at_claims_and_cited_paths() -> None:
    output = evidence_json(
        claim("c001", evidence_quote="this line is nowhere in the file"),
        claim("c002", evidence_path="pkg/missing.py"),
        claim("c003", evidence_path="pkg/logo.png"),
        claim("c004", evidence_symbol="no_such_symbol"),
        claim("c004"),
    )
    result = run("docs_evidence_map", output, {"context": CONTEXT_TEXT})
    assert result.outcome == "fail"
    assert findings(result) == [
        ("claims.unique_ids", "CLAIM_DUPLICATE_ID", "claim:c004"),
        ("evidence.path_in_target", "CLAIM_PATH_NOT_IN_TARGET", "claim:c002"),
        ("evidence.path_readable", "CLAIM_CITES_OMITTED_FILE", "pkg/logo.png#c003"),
        ("evidence.quote_occurs", "CLAIM_QUOTE_NOT_FOUND", "pkg/config.py#c001"),
        ("evidence.symbol_occurs", "CLAIM_SYMBOL_NOT_FOUND", "pkg/config.py#c004"),
    ]
    assert len(result.findings) == len(result.reasons)
    assert all(f.hint and f.hint.endswith(".") for f in result.findings)


def test_a_path_the_target_does_not_hold_is_never_a_pointer() -> None:
    # The quote fails in a real file, but the claim cites a made-up path too: only its id is shown.
    leaky = claim("c001", evidence_path="secret plan for the launch.txt")
    result = run("docs_evidence_map", evidence_json(leaky), {"context": CONTEXT_TEXT})
    assert findings(result) == [("evidence.path_in_target", "CLAIM_PATH_NOT_IN_TARGET", "claim:c001")]


def test_findings_never_carry_payload_text() -> None:
    leaky_id = "the api key is hunter2"
    output = evidence_json(claim(leaky_id, evidence_quote="not in the file at all"))
    result = run("docs_evidence_map", output, {"context": CONTEXT_TEXT})
    [finding] = result.findings
    assert finding.pointer.startswith("pkg/config.py#h-")
    assert "hunter2" not in json.dumps(result.finding_dicts())


def test_verification_findings_point_at_claims_and_fields() -> None:
    output = report_json(["c001", "zz9"], ["c001", "c002"], {"c002": "bad reason"})
    result = run("docs_verification_report", output, {"evidence_map": EVIDENCE_TEXT})
    assert findings(result) == [
        ("claims.classified_once", "CLAIM_IN_BOTH_SETS", "claim:c001"),
        ("claims.classified_once", "UNCLASSIFIED_CLAIM", "claim:c003"),
        ("claims.known", "UNKNOWN_CLAIM_ID", "claim:zz9"),
        ("rejections.reason_code", "INVALID_REASON_CODE", "claim:c002"),
        ("rejections.reason_code", "REJECTION_WITHOUT_REASON", "claim:c001"),
    ]
    empty = run("docs_verification_report", report_json([], []), {"evidence_map": EVIDENCE_TEXT})
    assert ("min_verified_claims", "NO_VERIFIED_CLAIMS", "field:verified_claims") in findings(empty)


def test_verification_thresholds_are_rules_with_findings() -> None:
    report = report_json(["c001"], ["c002", "c003"], {"c002": "NOT_FOUND", "c003": "NOT_FOUND"})
    inputs = {"evidence_map": EVIDENCE_TEXT}
    assert run("docs_verification_report", report, inputs).outcome == "pass"  # defaults: 1 and 1.0
    strict = run(
        "docs_verification_report",
        report,
        inputs,
        rules={"min_verified_claims": 2, "max_rejected_share": 0.5},
    )
    assert strict.reasons == ("REJECTED_SHARE_ABOVE_MAX:0.667>0.5", "VERIFIED_CLAIMS_BELOW_MIN:1<2")
    assert findings(strict) == [
        ("max_rejected_share", "REJECTED_SHARE_ABOVE_MAX", "field:rejected_claims"),
        ("min_verified_claims", "VERIFIED_CLAIMS_BELOW_MIN", "field:verified_claims"),
    ]
    # Zero verified claims are allowed when the profile asks for none.
    none_verified = report_json(
        [], ["c001", "c002", "c003"], {c: "NOT_FOUND" for c in ("c001", "c002", "c003")}
    )
    assert run("docs_verification_report", none_verified, inputs, rules={"min_verified_claims": 0}).passed


def test_struct_findings_point_at_sections_and_claims() -> None:
    struct = {
        **STRUCT,
        "caveats": "Mind the gap.\n\n### Evidence map\n\n- c001\n",
        "related_components": "Widgets are rendered by the widgets package.",
    }
    inputs = {"evidence_map": EVIDENCE_TEXT, "verification_report": REJECTING_REPORT}
    result = run("docs_readme_struct", json.dumps(struct), inputs)
    assert findings(result) == [
        ("no_evidence_heading", "EVIDENCE_HEADING_PRESENT", "section:caveats"),
        ("no_rejected_claim_text", "REJECTED_CLAIM_TEXT", "claim:c002"),
    ]


def test_final_findings_point_at_output_lines_and_sections() -> None:
    rendered = render(STRUCT)
    without_usage = rendered.split("## Usage")[0]
    output = "Intro line.\n\n" + without_usage + "## Evidence\n\n- c001\n"
    result = run("docs_readme_final", output, {"readme_struct": json.dumps(STRUCT)}, rules={"max_drift": 0.0})
    evidence_line = output.splitlines().index("## Evidence") + 1
    assert findings(result) == [
        ("max_drift", "DRIFT_ABOVE_THRESHOLD", "output"),
        ("no_evidence_heading", "EVIDENCE_HEADING_PRESENT", f"output:{evidence_line}"),
        ("sections.survive", "SECTION_MISSING", "section:usage"),
        ("title.leads", "TITLE_MISSING", "output:1"),
    ]


def test_findings_are_deterministic_and_sorted() -> None:
    output = evidence_json(*(claim(f"c{n}", evidence_quote="nowhere") for n in (9, 1, 5)))
    first = run("docs_evidence_map", output, {"context": CONTEXT_TEXT})
    second = run("docs_evidence_map", output, {"context": CONTEXT_TEXT})
    assert first.findings == second.findings
    keys = [(f.rule_id, f.code, f.pointer) for f in first.findings]
    assert keys == sorted(keys) and len(keys) == 3


def _emitted_codes(module) -> set[str]:
    return set(re.findall(r'reason\(\s*"([A-Z_]+)"', Path(module.__file__).read_text()))


def test_every_reason_code_the_gates_give_has_a_finding_rule() -> None:
    docs_codes = _emitted_codes(docs_gates)
    tables = docs_gates.FINDINGS
    mapped = set(GENERIC_FINDINGS).union(*(set(table) for table in tables.values()))
    assert docs_codes - mapped == set()
    assert _emitted_codes(generic_gates) - set(GENERIC_FINDINGS) == set()
    assert set(tables) == set(docs_gates.GATES)
    # A code no table names is shown as unmapped rather than dropped.
    result = run("schema_required_fields", "[]")
    assert [f.rule_id for f in result.findings] == ["output.json"]
    assert UNMAPPED_RULE not in {f.rule_id for f in result.findings}


def test_fail_on_violation_false_still_records_findings() -> None:
    result = run("schema_required_fields", "{}", required_fields=("title",), fail_on_violation=False)
    assert result.outcome == "warn"
    assert findings(result) == [("required_fields", "FIELD_MISSING", "field:title")]


# --- rules: digest, validation at load, code version ----------------------------------------


def _loaded(tmp_path: Path, rules: dict[str, Any] | None, gate_id: str = "verification_gate"):
    """The shipped profile as a workspace layer, with ``rules`` for one gate."""
    root = tmp_path / "layer"
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts", dirs_exist_ok=True)
    doc = yaml.safe_load(SHIPPED.read_text())
    for gate in doc["gates"]:
        if gate["gate_id"] == gate_id:
            if rules is None:
                gate.pop("rules", None)
            else:
                gate["rules"] = rules
    path = root / "profiles" / f"{WORKFLOW}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_rules_digest_applies_defaults_and_follows_every_threshold(tmp_path: Path) -> None:
    load_builtin_workflows()
    base = load_profile_file(_loaded(tmp_path / "a", None)).profile.gate("verification_gate")
    explicit = load_profile_file(
        _loaded(tmp_path / "b", {"min_verified_claims": 1, "max_rejected_share": 1.0})
    ).profile.gate("verification_gate")
    changed = load_profile_file(_loaded(tmp_path / "c", {"min_verified_claims": 3})).profile.gate(
        "verification_gate"
    )
    assert rules_digest(base) == rules_digest(explicit)
    assert rules_digest(changed) != rules_digest(base)
    assert rules_digest(base).startswith("sha256:")


@pytest.mark.parametrize(
    ("gate_id", "rules", "code", "rule"),
    [
        ("verification_gate", {"min_verified_claims": "3"}, "PROFILE_GATE_RULE_TYPE", "min_verified_claims"),
        ("verification_gate", {"min_verified_claims": 2.5}, "PROFILE_GATE_RULE_TYPE", "min_verified_claims"),
        ("verification_gate", {"min_verified_claims": True}, "PROFILE_GATE_RULE_TYPE", "min_verified_claims"),
        ("verification_gate", {"min_verified_claims": -1}, "PROFILE_GATE_RULE_RANGE", "min_verified_claims"),
        ("verification_gate", {"max_rejected_share": 1.5}, "PROFILE_GATE_RULE_RANGE", "max_rejected_share"),
        (
            "verification_gate",
            {"max_rejected_shares": 0.5},
            "PROFILE_GATE_RULE_UNKNOWN",
            "max_rejected_shares",
        ),
        ("final_gate", {"max_drift": -0.1}, "PROFILE_GATE_RULE_RANGE", "max_drift"),
        ("final_gate", {"max_drift": "0.2"}, "PROFILE_GATE_RULE_TYPE", "max_drift"),
        ("evidence_gate", {"max_drift": 0.2}, "PROFILE_GATE_RULE_UNKNOWN", "max_drift"),
    ],
)
def test_gate_rules_are_checked_when_the_profile_loads(
    tmp_path: Path, gate_id: str, rules: dict[str, Any], code: str, rule: str
) -> None:
    path = _loaded(tmp_path, rules, gate_id)
    with pytest.raises(ProfileError) as raised:
        load_profile_file(path)
    error = raised.value
    assert error.code == code
    assert (error.details["path"], error.details["gate_id"], error.details["rule"]) == (
        str(path),
        gate_id,
        rule,
    )
    assert error.details["value"] == repr(rules[rule])
    assert str(path) in error.message


def test_a_required_rule_left_out_is_a_type_error_at_load(tmp_path: Path) -> None:
    path = _loaded(tmp_path, None)
    doc = yaml.safe_load(path.read_text())
    doc["gates"].append({"gate_id": "sections_gate", "gate_type": "required_sections"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ProfileError) as raised:
        load_profile_file(path)
    assert (raised.value.code, raised.value.details["rule"]) == ("PROFILE_GATE_RULE_TYPE", "sections")
    assert raised.value.details["value"] is None


def test_rules_that_skip_the_loader_fail_the_gate_with_a_code() -> None:
    with pytest.raises(GateError) as raised:
        run("docs_verification_report", "{}", rules={"min_verified_claims": -2})
    assert raised.value.code == "GATE_RULES_INVALID"
    assert raised.value.details["rule"] == "min_verified_claims"


def test_a_changed_threshold_flips_the_verdict_and_is_a_new_code_version(tmp_path: Path) -> None:
    load_builtin_workflows()
    shipped = load_profile_file(_loaded(tmp_path / "shipped", None))
    strict = load_profile_file(_loaded(tmp_path / "strict", {"min_verified_claims": 3}))
    report = report_json(["c001", "c002"], ["c003"], {"c003": "NOT_FOUND"})
    inputs = {"evidence_map": evidence_json(*GOOD_CLAIMS)}

    passed = evaluate(shipped.profile.gate("verification_gate"), report, inputs)
    failed = evaluate(strict.profile.gate("verification_gate"), report, inputs)
    assert passed.outcome == "pass"
    assert failed.outcome == "fail"
    assert failed.reasons == ("VERIFIED_CLAIMS_BELOW_MIN:2<3",)
    assert failed.rules_digest == strict.gate_rules_digests["verification_gate"] != passed.rules_digest

    # A new code version for the turn the gate checks (so new threads), the other turns unchanged.
    assert strict.code_version != shipped.code_version
    assert strict.turn_code_version("verification") != shipped.turn_code_version("verification")
    for turn_id in ("evidence_gather", "readme_struct", "style_refine"):
        assert strict.turn_code_version(turn_id) == shipped.turn_code_version(turn_id)


def test_every_gate_type_declares_its_rules() -> None:
    from wf_pipeline.gates import gate_type

    declared = {name: set(gate_type(name).rules.model_fields) for name in gate_types()}
    assert declared["docs_verification_report"] == {"min_verified_claims", "max_rejected_share"}
    assert declared["docs_readme_final"] == declared["no_semantic_drift"] == {"max_drift"}
    assert declared["required_sections"] == {"sections", "level"}
    assert declared["docs_evidence_map"] == declared["schema_required_fields"] == set()
    # The defaults docs/profiles.md documents.
    defaults = gate_type("docs_verification_report").rules()
    assert (defaults.min_verified_claims, defaults.max_rejected_share) == (1, 1.0)
    assert gate_type("docs_readme_final").rules().max_drift == 0.15
    profiles_doc = (REPO_ROOT / "docs" / "profiles.md").read_text()
    for rule in ("min_verified_claims", "max_rejected_share", "max_drift", "PROFILE_GATE_RULE_RANGE"):
        assert f"`{rule}`" in profiles_doc, rule


# --- where users look: records, wf threads show, wf gates explain, Dagster check metadata -----


@pytest.mark.slow
def test_a_strict_workspace_profile_fails_verification_and_explains_it(tmp_path: Path) -> None:
    from wf_pipeline.compiler import open_instance
    from wf_pipeline.settings import Settings

    sandbox = make_sandbox(tmp_path)
    profile = _loaded(tmp_path, {"min_verified_claims": 1000})
    shutil.copytree(profile.parent.parent, sandbox.cwd, dirs_exist_ok=True)
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")

    summary = sandbox.wf_json("run", WORKFLOW, str(tree), expect_rc=1)
    [thread] = summary["threads"]
    assert (thread["status"], thread["error_code"]) == ("failed", "GATE_FAILED")
    thread_id = thread["thread_id"]
    expected = {
        "rule_id": "min_verified_claims",
        "code": "VERIFIED_CLAIMS_BELOW_MIN",
        "pointer": "field:verified_claims",
        "hint": "Fewer claims were verified than the profile requires.",
    }

    # wf threads show: every verdict with its findings and the digest of its rules.
    details = sandbox.wf_json("threads", "show", thread_id)
    gates = {t["turn_id"]: t["gate"] for t in details["turns"]}
    assert gates["evidence_gather"]["findings"] == []
    [finding] = gates["verification"]["findings"]
    # The reason keeps its figures: the claims verified, then the profile's minimum.
    finding_reason = finding.pop("reason")
    assert re.fullmatch(r"VERIFIED_CLAIMS_BELOW_MIN:\d+<1000", finding_reason)
    assert finding == expected
    assert gates["verification"]["rules_digest"].startswith("sha256:")
    shown = sandbox.wf("threads", "show", thread_id)
    assert shown.returncode == 0
    assert "min_verified_claims" in shown.stdout and "field:verified_claims" in shown.stdout

    # wf gates explain: the latest verdict per turn, findings grouped by rule id.
    explained = sandbox.wf_json("gates", "explain", thread_id)
    assert [(t["turn_id"], t["outcome"]) for t in explained["turns"]] == [
        ("evidence_gather", "pass"),
        ("verification", "fail"),
    ]
    [grouped] = explained["turns"][1]["rules"]["min_verified_claims"]
    assert grouped.pop("reason").endswith("<1000")
    assert grouped == {k: v for k, v in expected.items() if k != "rule_id"}
    one = sandbox.wf_json("gates", "explain", thread_id, "--turn", "verification")
    assert [t["turn_id"] for t in one["turns"]] == ["verification"]
    text = sandbox.wf("gates", "explain", thread_id, "--turn", "verification")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    rule_line = lines.index("  min_verified_claims")
    assert re.match(
        r"VERIFIED_CLAIMS_BELOW_MIN:\d+<1000 at field:verified_claims", lines[rule_line + 1].strip()
    )

    unknown_turn = sandbox.wf("gates", "explain", thread_id, "--turn", "no_such_turn", "--json")
    assert unknown_turn.returncode == 1
    assert json.loads(unknown_turn.stdout)["error"]["code"] == "RUN_UNKNOWN_TURN"
    unknown_thread = sandbox.wf("gates", "explain", "thread:000000000000000000000000")
    assert unknown_thread.returncode == 1
    assert unknown_thread.stderr.startswith("RUN_UNKNOWN_THREAD:")

    # The Dagster check of the gate carries the same findings in its metadata.
    instance = open_instance(Settings.from_env({"WF_HOME": str(sandbox.home)}))
    [record] = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey([WORKFLOW, "verification_report"]), "verification_gate"), limit=10
    )
    evaluation = record.event.dagster_event.asset_check_evaluation_data
    assert not evaluation.passed
    assert evaluation.metadata["findings"].value == [{**expected, "reason": finding_reason}]
    assert evaluation.metadata["rules_digest"].value == gates["verification"]["rules_digest"]
