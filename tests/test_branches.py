"""Conditional branches: the `when:` language, its load errors, and branches taken and not taken end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterRunStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from e2e_support import isolated_settings, workspace_layer

from wf_pipeline.cli.main import main as wf_main
from wf_pipeline.compiler import open_instance
from wf_pipeline.errors import PROVIDER_HTTP_ERROR, ProfileError, ProviderError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.payloads import StrictPayload, register_output_model
from wf_pipeline.metadata.records import ThreadRecord, TurnRecord
from wf_pipeline.profiles import load_profile_file
from wf_pipeline.profiles.expressions import FieldKind, evaluate, parse, validate
from wf_pipeline.providers import create_provider
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse
from wf_pipeline.providers.offline import register_offline_turn
from wf_pipeline.runtime import RuntimeEnv, resume_seq
from wf_pipeline.runtime.branches import decision_digest, standing_skip
from wf_pipeline.service import resume_thread, run_workflow, show_thread
from wf_pipeline.service.cas import verify_cas
from wf_pipeline.service.replay import replay
from wf_pipeline.telemetry import run_query
from wf_pipeline.workflows import load_builtin_workflows

WORKFLOW = "docs_writer_thread_v1"


class Ratio(StrictPayload):
    """A nested object, to read a field two levels down."""

    value: float


class BranchProbe(StrictPayload):
    """A test output with fields of every kind the language reads."""

    score: float
    verified: int
    mode: Literal["fast", "slow"]
    label: str
    ratio: Ratio | None = None
    claims: tuple[str, ...] = ()


class BranchExtra(StrictPayload):
    """The output of the conditional test turn."""

    notes: int


def probe_turn(request: Any) -> str:
    """Offline `branch_probe`: the share of verified claims of the verification report."""
    report = json.loads(request.inputs["verification_report"])
    verified, rejected = len(report["verified_claims"]), len(report["rejected_claims"])
    score = verified / (verified + rejected) if verified + rejected else 0.0
    return json.dumps(
        {"score": score, "verified": verified, "mode": "fast", "label": "probe", "ratio": {"value": score}},
        sort_keys=True,
    )


def extra_turn(request: Any) -> str:
    """Offline `branch_extra`."""
    return json.dumps({"notes": len(request.inputs)})


load_builtin_workflows()
register_output_model("branch_probe", BranchProbe)
register_output_model("branch_extra", BranchExtra)
register_offline_turn("branch_probe", probe_turn)
register_offline_turn("branch_extra", extra_turn)

MODELS = {"branch_probe": BranchProbe}


# --- the language ----------------------------------------------------------------------


def _decide(text: str, values: dict[str, Any], gates: frozenset[str] = frozenset({"g"})) -> Any:
    expression, kinds = validate(text, MODELS, gates)
    return evaluate(expression, kinds, lambda ref: values.get(ref.dotted))


def test_comparisons_and_boolean_operators_evaluate_over_the_values_read() -> None:
    values = {"branch_probe.score": 0.5, "branch_probe.verified": 3, "gates.g.passed": True}
    assert _decide("branch_probe.score < 0.8", values).result is True
    assert _decide("branch_probe.score >= 0.8 or not gates.g.passed", values).result is False
    assert _decide("0.2 < branch_probe.score <= 0.5 and branch_probe.verified == 3", values).result is True
    assert _decide("(branch_probe.verified > -1) and gates.g.passed == true", values).result is True


def test_a_decision_records_every_field_read_and_digests_free_text() -> None:
    values = {"branch_probe.label": "secret words", "branch_probe.mode": "fast", "gates.g.outcome": "pass"}
    decision = _decide(
        "branch_probe.label == 'x' or branch_probe.mode == 'fast' or gates.g.outcome == 'fail'", values
    )
    assert decision.result is True
    assert decision.reads == {
        "branch_probe.label": digest_text("secret words"),
        "branch_probe.mode": "fast",
        "gates.g.outcome": "pass",
    }
    assert decision.to_json()["expression"].startswith("branch_probe.label")


def test_a_gate_outcome_may_be_warn() -> None:
    # The outcomes a gate records (pass, warn, fail) are the values a when: may compare with.
    assert _decide("gates.g.outcome == 'warn'", {"gates.g.outcome": "warn"}).result is True
    assert _decide("gates.g.outcome != 'fail'", {"gates.g.outcome": "warn"}).result is True
    kinds = validate("gates.g.outcome == 'pass'", MODELS, frozenset({"g"}))[1]
    assert kinds["gates.g.outcome"] == FieldKind("enum", ("fail", "pass", "warn"))


def test_an_absent_value_reads_as_null_and_orders_with_nothing() -> None:
    assert _decide("branch_probe.score < 0.8", {}).result is False
    assert _decide("branch_probe.score >= 0.8", {}).result is False
    assert _decide("branch_probe.score != 0.8", {}).result is True
    assert _decide("not gates.g.passed", {}).result is True
    assert _decide("branch_probe.ratio.value > 0.1", {"branch_probe.ratio.value": 0.5}).result is True


def test_parse_lists_the_fields_read_once_in_order() -> None:
    expression = parse("gates.g.passed and branch_probe.score < 1 and branch_probe.score > 0")
    assert [ref.dotted for ref in expression.refs] == ["gates.g.passed", "branch_probe.score"]
    assert expression.output_types == ("branch_probe",)
    assert expression.gate_ids == ("g",)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("branch_probe.score <", "PROFILE_WHEN_SYNTAX"),
        # Bounded so that parsing never meets the recursion limit (a traceback, not a code).
        ("not " * 1000 + "branch_probe.verified", "PROFILE_WHEN_SYNTAX"),
        ("not " * 40 + "branch_probe.verified", "PROFILE_WHEN_SYNTAX"),
        ("branch_probe.score < 1e999", "PROFILE_WHEN_FORBIDDEN"),
        ("__import__('os').system('x')", "PROFILE_WHEN_FORBIDDEN"),
        ("branch_probe.claims[0] == 'a'", "PROFILE_WHEN_FORBIDDEN"),
        ("branch_probe.score * 2 > 1", "PROFILE_WHEN_FORBIDDEN"),
        ("branch_probe.mode in ('fast',)", "PROFILE_WHEN_FORBIDDEN"),
        ("other_output.score > 1", "PROFILE_WHEN_NOT_UPSTREAM"),
        ("branch_probe.nope > 1", "PROFILE_WHEN_UNKNOWN_FIELD"),
        ("branch_probe.ratio > 1", "PROFILE_WHEN_UNKNOWN_FIELD"),
        ("gates.g.verdict == 'pass'", "PROFILE_WHEN_UNKNOWN_FIELD"),
        ("gates.missing.passed", "PROFILE_WHEN_UNKNOWN_GATE"),
        ("branch_probe.score == 'high'", "PROFILE_WHEN_TYPE_MISMATCH"),
        ("branch_probe.mode < 1", "PROFILE_WHEN_TYPE_MISMATCH"),
        ("branch_probe.mode == 'medium'", "PROFILE_WHEN_TYPE_MISMATCH"),
        ("branch_probe.claims == 1", "PROFILE_WHEN_TYPE_MISMATCH"),
        ("branch_probe.score", "PROFILE_WHEN_TYPE_MISMATCH"),
        ("branch_probe.verified and gates.g.passed", "PROFILE_WHEN_TYPE_MISMATCH"),
    ],
)
def test_each_bad_expression_has_its_code(text: str, code: str) -> None:
    with pytest.raises(ProfileError) as caught:
        validate(text, MODELS, frozenset({"g"}))
    assert caught.value.code == code
    assert caught.value.details["expression"] == text


def test_the_kinds_of_the_fields_read() -> None:
    _, kinds = validate("branch_probe.mode == 'slow' and branch_probe.score > 0", MODELS, frozenset())
    assert kinds["branch_probe.mode"] == FieldKind("enum", ("fast", "slow"))
    assert kinds["branch_probe.score"].kind == "number"


# --- profiles --------------------------------------------------------------------------


def _branch_workspace(parent: Path, when: str | None, *, name: str = "workspace", edit=None) -> Path:
    """A workspace copy of the docs writer with a probe turn and a conditional turn before readme_struct."""
    workspace = workspace_layer(parent, name)
    prompts = workspace / "assets" / "prompts" / "branch"
    prompts.mkdir(parents=True)
    (prompts / "probe.md").write_text("Probe {{ target_path }}:\n{{ inputs.verification_report }}\n")
    (prompts / "extra.md").write_text("Extra for {{ target_path }}: {{ inputs.branch_probe }}\n")
    path = workspace / "profiles" / f"{WORKFLOW}.yaml"
    doc = yaml.safe_load(path.read_text())
    turns = {turn["turn_id"]: turn for turn in doc["turns"]}
    turns["readme_struct"]["seq"], turns["style_refine"]["seq"] = 5, 6
    turns["readme_struct"]["input_refs"] = [*turns["readme_struct"]["input_refs"], "branch_extra"]
    probe = {
        "turn_id": "probe",
        "seq": 3,
        "title": "Probe",
        "prompt_ref": "assets/prompts/branch/probe.md",
        "input_refs": ["verification_report"],
        "output_type": "branch_probe",
    }
    extra = {
        "turn_id": "extra",
        "seq": 4,
        "title": "Extra",
        "prompt_ref": "assets/prompts/branch/extra.md",
        "input_refs": ["branch_probe"],
        "output_type": "branch_extra",
    }
    if when is not None:
        extra["when"] = when
    doc["turns"] = [*doc["turns"], probe, extra]
    if edit is not None:
        edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return workspace


def _load_fails(tmp_path: Path, when: str | None, code: str, edit=None) -> ProfileError:
    workspace = _branch_workspace(tmp_path, when, edit=edit)
    with pytest.raises(ProfileError) as caught:
        load_profile_file(workspace / "profiles" / f"{WORKFLOW}.yaml", "workspace")
    assert caught.value.code == code, caught.value
    return caught.value


@pytest.mark.parametrize(
    ("when", "code", "figure"),
    [
        ("branch_probe.score >", "PROFILE_WHEN_SYNTAX", "column"),
        ("len(branch_probe.label) > 1", "PROFILE_WHEN_FORBIDDEN", "construct"),
        ("branch_probe.claims[0] == 'x'", "PROFILE_WHEN_FORBIDDEN", "construct"),
        ("readme_struct.title == 'x'", "PROFILE_WHEN_NOT_UPSTREAM", "output_type"),
        ("branch_probe.share < 0.8", "PROFILE_WHEN_UNKNOWN_FIELD", "field"),
        ("verification_report.verified_share < 0.8", "PROFILE_WHEN_UNKNOWN_FIELD", "field"),
        ("gates.struct_gate.passed", "PROFILE_WHEN_UNKNOWN_GATE", "gate_id"),
        ("gates.verification_gate.outcome == 'skipped'", "PROFILE_WHEN_TYPE_MISMATCH", "found"),
        ("branch_probe.score < 'low'", "PROFILE_WHEN_TYPE_MISMATCH", "found"),
    ],
)
def test_a_profile_with_a_bad_when_fails_to_load_with_its_code(tmp_path, when, code, figure) -> None:
    error = _load_fails(tmp_path, when, code)
    assert error.details["turn_id"] == "extra"
    assert error.details["expression"] == when
    assert figure in error.details
    assert "extra" in error.message


def test_the_final_turn_cannot_be_conditional(tmp_path) -> None:
    def conditional_final(doc: dict[str, Any]) -> None:
        final = next(turn for turn in doc["turns"] if turn["turn_id"] == "style_refine")
        final["when"] = "gates.verification_gate.passed"

    error = _load_fails(tmp_path, None, "PROFILE_WHEN_FINAL_TURN", conditional_final)
    assert error.details["turn_id"] == "style_refine"


def test_a_valid_when_loads_and_changes_only_its_turns_code_version(tmp_path) -> None:
    plain = load_profile_file(
        _branch_workspace(tmp_path, None, name="a") / "profiles" / f"{WORKFLOW}.yaml", "workspace"
    )
    branched = load_profile_file(
        _branch_workspace(tmp_path, "gates.verification_gate.passed and branch_probe.score >= 0.5", name="b")
        / "profiles"
        / f"{WORKFLOW}.yaml",
        "workspace",
    )
    assert branched.branch("extra") is not None and branched.branch("probe") is None
    assert plain.turn_code_version("probe") == branched.turn_code_version("probe")
    assert plain.turn_code_version("extra") != branched.turn_code_version("extra")


# --- end to end ------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "core.py").write_text(
        '"""Core helpers."""\n\n\ndef add(a, b):\n    """Add two numbers."""\n    return a + b\n'
    )
    (tree / "main.py").write_text('"""Entry point."""\n\nfrom pkg.core import add\n\nprint(add(1, 2))\n')
    return tree


def _records(settings, thread_id: str) -> dict[str, Any]:
    with RuntimeEnv.open(settings) as env:
        return env.records.latest_turns(thread_id)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("when", "taken"),
    [
        ("branch_probe.score >= 0.5 and gates.verification_gate.passed", True),
        ("branch_probe.score > 1.5", False),
    ],
)
def test_a_branch_runs_or_is_recorded_skipped_and_a_replay_reproduces_it(
    settings, tmp_path, when, taken
) -> None:
    tree = _tree(tmp_path)
    workspace = _branch_workspace(tmp_path, when)
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok
    assert summary.threads and all(thread.status == "completed" for thread in summary.threads)
    # The thread's final output is written (mirrored under the home's output folder).
    assert len(list((settings.home / "out").glob("tree~*/README.md"))) == 1
    for thread in summary.threads:
        latest = _records(settings, thread.thread_id)
        extra, struct = latest["extra"], latest["readme_struct"]
        assert extra.branch is not None and extra.branch["expression"] == when
        assert extra.branch["result"] is taken
        assert set(extra.branch["reads"]) >= {"branch_probe.score"}
        assert isinstance(extra.branch["reads"]["branch_probe.score"], float)
        assert latest["probe"].branch is None
        if taken:
            assert extra.status == "completed" and extra.provider_called
            assert "branch_extra" in struct.request["inputs"]
        else:
            assert extra.status == "skipped" and not extra.provider_called
            assert extra.output_artifact_id is None
            # The absent input is left out of the request of the turn that reads it.
            assert "branch_extra" not in struct.request["inputs"]
        assert struct.status == "completed" and latest["style_refine"].status == "completed"

    # Telemetry: one decision row per thread with the branch taken; the rows of the
    # conditional turn's attempt carry it too, those of unconditional turns carry null.
    branch = "taken" if taken else "not_taken"
    _, decisions = run_query(
        settings,
        "select thread_id, branch, bytes from metadata_writes where domain = 'branch' and key = 'turns.branch'",
    )
    assert sorted(row[0] for row in decisions) == sorted(t.thread_id for t in summary.threads)
    assert all(row[1] == branch and row[2] > 0 for row in decisions)
    _, by_turn = run_query(
        settings,
        "select turn_id, branch, count(*) from artifact_writes where outcome = 'accepted' "
        "group by all order by all",
    )
    extra_rows = [(b, n) for turn, b, n in by_turn if turn == "extra"]
    assert extra_rows == ([("taken", extra_rows[0][1])] if taken else [])
    assert all(b is None for turn, b, _ in by_turn if turn != "extra")

    report = replay(settings, tree=tree, workflow_id=WORKFLOW, verify=True, workspace_dir=workspace)
    assert report.threads and all(thread.matched for thread in report.threads), [
        d.to_json() for t in report.threads for d in t.divergences
    ]
    replayed = report.threads[0].turns["extra"][-1]
    assert replayed.branch is not None and replayed.branch["result"] is taken


@pytest.mark.slow
def test_a_replay_reports_a_decision_that_differs_as_a_branch_divergence(settings, tmp_path) -> None:
    tree = _tree(tmp_path)
    recorded = _branch_workspace(tmp_path, "branch_probe.score > 1.5", name="recorded")
    assert run_workflow(settings, WORKFLOW, tree, workspace_dir=recorded).ok
    # The same threads, replayed under a profile whose condition now holds.
    changed = _branch_workspace(tmp_path, "branch_probe.score > -1.5", name="changed")
    report = replay(
        settings, tree=tree, workflow_id=WORKFLOW, verify=True, workspace_dir=changed, pinned=False
    )
    classes = {d.artifact_class for t in report.threads for d in t.divergences if d.turn_id == "extra"}
    assert "branch" in classes
    branch = next(d for t in report.threads for d in t.divergences if d.artifact_class == "branch")
    assert (branch.expected, branch.actual) == ("not_taken", "taken")
    assert branch.first_difference is not None and branch.first_difference.input == "when"


# --- resumes ---------------------------------------------------------------------------


class FailingTurn:
    """The offline provider; while ``broken``, every call of one turn is refused (not retryable)."""

    def __init__(self, turn_id: str) -> None:
        self._inner = create_provider("offline")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self.turn_id = turn_id
        self.broken = True
        self.calls: list[str] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls.append(request.turn_id)
        if self.broken and request.turn_id == self.turn_id:
            raise ProviderError(PROVIDER_HTTP_ERROR, f"HTTP 400 for turn {request.turn_id}")
        return self._inner.complete(request)


def _attempts(settings, thread_id: str) -> list[tuple[str, int, str]]:
    with RuntimeEnv.open(settings) as env:
        return [(t.turn_id, t.attempt, t.status) for t in env.records.turns_for_thread(thread_id)]


@pytest.mark.slow
def test_a_resume_keeps_a_skip_and_runs_from_the_turn_that_failed_after_it(
    settings, tmp_path, capsys
) -> None:
    tree = _tree(tmp_path)
    workspace = _branch_workspace(tmp_path, "branch_probe.score > 1.5")
    provider = FailingTurn("readme_struct")
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider)
    assert not summary.ok
    failed = [t for t in summary.threads if t.status == "failed"]
    assert failed and all(t.error_code == "PROVIDER_HTTP_ERROR" for t in failed)
    thread_id = failed[0].thread_id
    before = _attempts(settings, thread_id)
    assert ("extra", 1, "skipped") in before and ("readme_struct", 1, "failed") in before

    loaded = load_profile_file(workspace / "profiles" / f"{WORKFLOW}.yaml", "workspace")
    with RuntimeEnv.open(settings) as env:
        thread = env.records.get_thread(thread_id)
        history = env.records.latest_turns(thread_id)
        # The skip is settled: the resume starts at the turn that failed, not at the skipped one.
        assert resume_seq(loaded, thread, history) == loaded.profile.turn("readme_struct").seq
        assert standing_skip(loaded, thread, "extra", history) == history["extra"]

    provider.broken, provider.calls = False, []
    resumed = resume_thread(settings, thread_id, workspace_dir=workspace, provider=provider)
    assert resumed.ok and resumed.threads[0].status == "completed"
    # Only the failed turn and the one after it call the provider; the skip is neither decided
    # again (no new record) nor run.
    assert provider.calls == ["readme_struct", "style_refine"]
    after = _attempts(settings, thread_id)
    assert [a for a in after if a[0] == "extra"] == [("extra", 1, "skipped")]
    assert ("readme_struct", 2, "completed") in after and ("style_refine", 1, "completed") in after
    latest = _records(settings, thread_id)
    assert "branch_extra" not in latest["readme_struct"].request["inputs"]
    # The shown thread carries each decision: expression, values read, result.
    shown = show_thread(settings, thread_id)
    extra = next(t for t in shown["turns"] if t["turn_id"] == "extra")
    assert extra["decision"]["branch"] == "not_taken" and extra["decision"]["result"] is False
    assert extra["decision"]["expression"] == "branch_probe.score > 1.5"
    assert isinstance(extra["decision"]["reads"]["branch_probe.score"], float)
    assert extra["decision"]["decision_digest"].startswith("sha256:")
    assert all(t["decision"] is None for t in shown["turns"] if t["turn_id"] != "extra")
    # wf threads show prints the decision; --json carries the same fields.
    assert wf_main(["threads", "show", thread_id]) == 0
    text = capsys.readouterr().out
    assert "not_taken" in text and "branch_probe.score > 1.5" in text
    assert "branch_probe.score=" in text and extra["decision"]["decision_digest"] in text
    assert wf_main(["threads", "show", "--json", thread_id]) == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert [t["decision"] for t in shown_json["turns"] if t["turn_id"] == "extra"] == [extra["decision"]]


def _record(turn_id: str, seq: int, started: int, **fields: Any) -> TurnRecord:
    return TurnRecord(
        turn_record_id=f"{turn_id}-{started}",
        thread_id="thread:t",
        turn_id=turn_id,
        turn_seq=seq,
        attempt=fields.pop("attempt", 1),
        status=fields.pop("status", "completed"),
        started_at_ms=started,
        ended_at_ms=started,
        **fields,
    )


def test_a_skip_stands_until_a_turn_its_decision_read_runs_again(tmp_path) -> None:
    loaded = load_profile_file(
        _branch_workspace(tmp_path, "branch_probe.score > 1.5 and gates.verification_gate.passed")
        / "profiles"
        / f"{WORKFLOW}.yaml",
        "workspace",
    )
    artifact = "sha256:" + "a" * 64
    decision = {"expression": "x", "reads": {"branch_probe.score": 0.5}, "result": False}
    history = {
        "evidence_gather": _record("evidence_gather", 1, 100, output_artifact_id=artifact),
        "verification": _record("verification", 2, 200, output_artifact_id=artifact),
        "probe": _record("probe", 3, 300, output_artifact_id=artifact),
        "extra": _record("extra", 4, 400, status="skipped", branch=decision),
        "readme_struct": _record("readme_struct", 5, 500, status="failed"),
    }
    thread = ThreadRecord(
        thread_id="thread:t",
        workflow_id=WORKFLOW,
        target_node_id="n",
        status="failed",
        created_at_ms=1,
        updated_at_ms=1,
        last_turn_seq=4,
    )
    assert standing_skip(loaded, thread, "extra", history) is history["extra"]
    assert resume_seq(loaded, thread, history) == 5
    # A turn the decision does not read ran again: the skip still stands.
    rerun_first = {
        **history,
        "evidence_gather": _record("evidence_gather", 1, 900, output_artifact_id=artifact),
    }
    assert standing_skip(loaded, thread, "extra", rerun_first) is history["extra"]
    # The output read (probe) or the gate read (verification) was produced again: decided again.
    for changed in ("probe", "verification"):
        seq = history[changed].turn_seq
        rerun = {**history, changed: _record(changed, seq, 900, output_artifact_id=artifact)}
        assert standing_skip(loaded, thread, "extra", rerun) is None
        assert resume_seq(loaded, thread, rerun) == 4
    # A skip after the thread's progress (a restarted thread) does not stand either.
    rewound = thread.model_copy(update={"last_turn_seq": 3})
    assert standing_skip(loaded, rewound, "extra", history) is None
    assert resume_seq(loaded, rewound, history) == 4
    # A taken branch is no skip.
    taken = {**history, "extra": _record("extra", 4, 400, branch={**decision, "result": True})}
    assert standing_skip(loaded, thread, "extra", taken) is None


# --- Dagster ---------------------------------------------------------------------------


def _gated_extra(doc: dict[str, Any]) -> None:
    """The conditional turn gets a gate, so that its Dagster check shows a branch not taken."""
    doc["gates"].append(
        {"gate_id": "extra_gate", "gate_type": "schema_required_fields", "required_fields": ["notes"]}
    )
    next(turn for turn in doc["turns"] if turn["turn_id"] == "extra")["gate_id"] = "extra_gate"


@pytest.mark.slow
def test_dagster_materializes_a_branch_not_taken_and_runs_the_later_turns_in_the_same_run(
    settings, tmp_path
) -> None:
    tree = _tree(tmp_path)
    workspace = _branch_workspace(tmp_path, "branch_probe.score > 1.5", edit=_gated_extra)
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok and summary.dagster_run_ids
    keys = {thread.target for thread in summary.threads}

    instance = open_instance(settings)
    for run_id in summary.dagster_run_ids:
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    extra_key, struct_key = AssetKey([WORKFLOW, "branch_extra"]), AssetKey([WORKFLOW, "readme_struct"])
    assert instance.get_materialized_partitions(extra_key) == keys
    assert instance.get_materialized_partitions(struct_key) == keys
    decisions = {}
    for thread in summary.threads:
        latest = _records(settings, thread.thread_id)["extra"]
        decisions[thread.target] = decision_digest(latest.branch)

    def latest_materialization(asset_key: AssetKey, partition: str):
        [record] = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
        ).records
        return record

    for partition in keys:
        extra = latest_materialization(extra_key, partition)
        metadata = extra.asset_materialization.metadata
        assert metadata["wf/branch"].value == "not_taken"
        assert metadata["wf/decision"].value == decisions[partition]
        # The later turn of the same target materialized in the same run.
        assert latest_materialization(struct_key, partition).run_id == extra.run_id

    # The gate of the turn not taken did not run: its check passed, saying so, and blocked nothing.
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(extra_key, "extra_gate"), limit=100
    )
    assert {record.partition for record in history} == keys
    for record in history:
        assert record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        assert evaluation.passed
        assert evaluation.metadata["outcome"].value == "not run (branch not taken)"
        assert evaluation.metadata["wf/branch"].value == "not_taken"
        assert evaluation.metadata["wf/decision"].value == decisions[record.partition]


@pytest.mark.slow
def test_a_repair_runs_past_a_skip_and_decides_again_only_over_changed_inputs(settings, tmp_path) -> None:
    tree = _tree(tmp_path)
    workspace = _branch_workspace(tmp_path, "branch_probe.score > 1.5")
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace)
    assert summary.ok
    thread_id = next(t.thread_id for t in summary.threads if t.path == "pkg")
    before = _records(settings, thread_id)
    lost = [before["probe"].output_artifact_id, before["readme_struct"].output_artifact_id]
    for artifact_id in lost:  # damaged behind the store's back: one bit flipped
        hex_digest = artifact_id.split(":", 1)[1]
        path = settings.home / "cas" / "objects" / hex_digest[:2] / hex_digest[2:]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    report = verify_cas(settings, repair=True, workspace_dir=workspace)
    # The turn after the skip (readme_struct) ran again too: both objects came back.
    assert {o["artifact_id"]: o["status"] for o in report["outcomes"]} == dict.fromkeys(lost, "repaired")
    assert report["ok"]
    attempts = _attempts(settings, thread_id)
    assert ("probe", 2, "completed") in attempts and ("readme_struct", 2, "completed") in attempts
    # The probe it reads ran again: decided again to the very same values, the skip is kept.
    assert [a for a in attempts if a[0] == "extra"] == [("extra", 1, "skipped")]
    _, rows = run_query(
        settings,
        f"select count(*) from metadata_writes where domain = 'branch' and thread_id = '{thread_id}'",
    )
    assert rows == [(1,)]
