"""One rule, one place: the evidence gate and the offline verifier judge evidence alike, and
extraction and gates read Markdown alike.

The cases pinned here are those where earlier copies of each rule disagreed: a dotted
symbol, a quote wrapped over two lines, and a ``## heading`` inside a longer fence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from wf_pipeline.gates import GateResult, evaluate
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextFile, ContextPayload, ContextTarget, parse_json_output
from wf_pipeline.providers import ProviderRequest, create_provider
from wf_pipeline.workflows.docs_writer.extract import first_paragraph_line, markdown_headings
from wf_pipeline.workflows.docs_writer.payloads import EvidenceMap, ReadmeStruct, VerificationReport
from wf_pipeline.workflows.docs_writer.render import render_readme


@dataclass(frozen=True)
class Spec:
    gate_type: str
    gate_id: str = "gate"
    required_fields: tuple[str, ...] = ()
    rules: dict[str, Any] = field(default_factory=dict)
    fail_on_violation: bool = True


def context_with(name: str, text: str, language: str | None) -> ContextPayload:
    return ContextPayload(
        target=ContextTarget(path="pkg", name="pkg", node_id="node:" + "0" * 64),
        files=(ContextFile(path=f"pkg/{name}", name=name, size=len(text), language=language, text=text),),
    )


def offline_turn(output_type: str, inputs: dict[str, str]) -> str:
    request = ProviderRequest(
        workflow_id="docs_writer_thread_v1",
        thread_id="thread:rules",
        turn_id=output_type,
        output_type=output_type,
        output_format="json",
        system_prompt="",
        user_prompt="",
        inputs=inputs,
    )
    return create_provider("offline").complete(request).text


def judge(context: ContextPayload, claim: dict[str, Any]) -> tuple[GateResult, VerificationReport]:
    """The evidence gate's result and the offline verifier's report for one claim."""
    inputs = {
        "context": canonical_json(context.to_json()).decode(),
        "evidence_map": json.dumps({"claims": [{"claim_id": "c001", **claim}]}),
    }
    gate = evaluate(Spec("docs_evidence_map"), inputs["evidence_map"], {"context": inputs["context"]})
    report = parse_json_output(offline_turn("verification_report", inputs), VerificationReport)
    return gate, report


DEFINES = "class Config:\n    def load(self):\n        return {}\n"
CALLS = "settings = Config.load(path)\n"
PARTS_ONLY = "class Config:\n    pass\n\n\ndef load():\n    return Config()\n"
LONGER_NAME = "value = MyConfig.loader(path)\n"


@pytest.mark.parametrize(
    ("text", "language", "holds"),
    [
        (DEFINES, "python", True),  # class Config defines load: the symbol is real code
        (CALLS, "python", True),  # the dotted name occurs whole
        (CALLS, None, True),
        (PARTS_ONLY, "python", False),  # Config and load exist, Config.load does not
        (LONGER_NAME, "python", False),  # only inside longer names
        ("class Config { load() { return {}; } }\n", "javascript", False),  # definitions: Python only
        ("class Config:\n    load = staticmethod(read)\n", "python", True),  # a class attribute
    ],
)
def test_a_dotted_symbol_is_judged_alike_by_gate_and_verifier(
    text: str, language: str | None, holds: bool
) -> None:
    claim = {"statement": "Config.load reads settings.", "evidence_path": "pkg/config.py"}
    gate, report = judge(
        context_with("config.py", text, language), {**claim, "evidence_symbol": "Config.load"}
    )
    assert gate.passed is holds
    assert ("c001" in report.verified_claims) is holds
    if not holds:
        assert gate.reasons == ("CLAIM_SYMBOL_NOT_FOUND:c001",)
        assert report.reasons == {"c001": "EVIDENCE_NOT_FOUND"}


WRAPPED_SOURCE = 'def load_config(path):\n    """Read the settings\n    file from disk."""\n'


@pytest.mark.parametrize(
    ("quote", "holds"),
    [
        ("Read the settings file from disk.", True),  # wrapped over two lines in the source
        ("Read  the settings\n\tfile", True),  # any run of whitespace is one space
        ("Read the settingsfile", False),  # a line break is not nothing
        ("   \n ", False),  # whitespace alone shows nothing
    ],
)
def test_a_wrapped_quote_is_judged_alike_by_gate_and_verifier(quote: str, holds: bool) -> None:
    claim = {
        "statement": "Settings come from disk.",
        "evidence_path": "pkg/config.py",
        "evidence_quote": quote,
    }
    gate, report = judge(context_with("config.py", WRAPPED_SOURCE, "python"), claim)
    assert gate.passed is holds
    assert ("c001" in report.verified_claims) is holds
    if not holds:
        assert gate.reasons == ("CLAIM_QUOTE_NOT_FOUND:c001",)
        assert report.reasons == {"c001": "EVIDENCE_NOT_FOUND"}


# --- a heading inside a longer fence -------------------------------------------------------

FENCED_GUIDE = (
    "# Guide\n"
    "\n"
    "````markdown\n"
    "```\n"
    "## Not a heading\n"
    "```\n"
    "Not prose either.\n"
    "````\n"
    "\n"
    "## Usage\n"
    "\n"
    "Run the collector.\n"
)


def test_extraction_treats_a_heading_inside_a_longer_fence_as_code() -> None:
    assert list(markdown_headings(FENCED_GUIDE)) == [(1, "Guide", "# Guide"), (2, "Usage", "## Usage")]
    assert first_paragraph_line(FENCED_GUIDE, "# Guide") == "Run the collector."
    context = context_with("guide.md", FENCED_GUIDE, "markdown")
    evidence = parse_json_output(
        offline_turn("evidence_map", {"context": context.model_dump_json()}), EvidenceMap
    )
    quotes = [claim.evidence_quote for claim in evidence.claims]
    assert quotes == ["# Guide", "## Usage", "Run the collector."]


def test_gates_treat_a_heading_inside_a_longer_fence_as_code() -> None:
    struct = ReadmeStruct(title="pkg", usage="- Run the collector.")
    fenced = "# pkg\n\n````markdown\n```\n## Usage\n```\n````\n\n- Run the collector.\n"
    inputs = {"readme_struct": struct.model_dump_json(exclude_none=True)}
    result = evaluate(Spec("docs_readme_final"), fenced, inputs)
    assert result.reasons == ("SECTION_MISSING:usage",)
    assert evaluate(Spec("docs_readme_final"), render_readme(struct), inputs).passed
    required = Spec("required_sections", rules={"sections": ["usage"]})
    assert evaluate(required, fenced, {}).reasons == ("SECTION_MISSING:usage",)
    # A heading that leaks the evidence map is no leak while it sits in code.
    leak = "# pkg\n\n````\n```\n## Evidence map\n```\n````\n\n## Usage\n\n- Run the collector.\n"
    assert evaluate(Spec("docs_readme_final"), leak, inputs).passed
