"""Gates of the docs writer, one per turn, plus the drift gate (``no_semantic_drift``).

Each parses the turn's output and inputs with the payload models and then checks what
the schema alone cannot: that evidence really is in the target, that the verification
covers the evidence map, that rejected claims stay out of the README, and that the
final markdown keeps the struct's sections and words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from wf_pipeline.gates.generic import (
    Heading,
    heading_slug,
    normalize_heading,
    parse_headings,
    parse_input,
    parse_output,
    reason,
    rules,
    rules_error,
    section_reasons,
)
from wf_pipeline.gates.registry import Evaluator, GateSpecLike
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.text.markdown import split_lines
from wf_pipeline.text.names import unescape_inline
from wf_pipeline.workflows.docs_writer.evidence import claim_evidence, collapse_whitespace
from wf_pipeline.workflows.docs_writer.payloads import (
    EVIDENCE_MAP_HEADINGS,
    README_SECTIONS,
    Claim,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
)

EVIDENCE_MAP_REF = "evidence_map"
VERIFICATION_REPORT_REF = "verification_report"
README_STRUCT_REF = "readme_struct"
DEFAULT_MAX_DRIFT = 0.15

_REASON_CODE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
# Sentence punctuation around a statement is not part of what would leak.
_STATEMENT_EDGES = " \t.,;:!?"


_EVIDENCE_HEADINGS = {normalize_heading(text): heading_slug(text) for text in EVIDENCE_MAP_HEADINGS}


def evidence_heading_reasons(headings: Iterable[Heading]) -> list[str]:
    """EVIDENCE_HEADING_PRESENT:<slug> for any heading that would leak the evidence map."""
    return [
        reason("EVIDENCE_HEADING_PRESENT", _EVIDENCE_HEADINGS[normalize_heading(h.text)])
        for h in headings
        if normalize_heading(h.text) in _EVIDENCE_HEADINGS
    ]


# --- drift ----------------------------------------------------------------------------


def max_drift_rule(spec: GateSpecLike) -> float:
    """``rules.max_drift`` (default 0.15), a fraction. Raises GateError GATE_RULES_INVALID outside [0, 1]."""
    value = rules(spec).get("max_drift", DEFAULT_MAX_DRIFT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise rules_error(spec, "max_drift", "a number between 0 and 1")
    return float(value)


def word_tokens(text: str) -> Counter[str]:
    """Lower-cased word tokens (runs of ``\\w``) of ``text`` with their counts."""
    return Counter(re.findall(r"\w+", text.lower()))


def drift(struct: ReadmeStruct, final_text: str) -> float:
    """Fraction of the struct's section-body tokens (a multiset) missing from the final text."""
    expected = Counter[str]()
    for body in struct.sections().values():
        expected.update(word_tokens(body))
    total = sum(expected.values())
    if total == 0:
        return 0.0
    missing = expected - word_tokens(final_text)
    return sum(missing.values()) / total


def drift_reasons(struct: ReadmeStruct, final_text: str, max_drift: float) -> list[str]:
    """DRIFT_ABOVE_THRESHOLD:<measured>><max> when the final text drifts more than ``max_drift``."""
    measured = drift(struct, final_text)
    if measured > max_drift:
        return [reason("DRIFT_ABOVE_THRESHOLD", f"{measured:.3f}>{max_drift:g}")]
    return []


# --- evidence_gather ------------------------------------------------------------------


def _claim_evidence_reasons(claim: Claim, context: ContextPayload) -> list[str]:
    evidence = claim_evidence(claim, context)
    if evidence.path == "omitted":
        return [reason("CLAIM_CITES_OMITTED_FILE", claim.claim_id)]
    if evidence.path == "missing":
        return [reason("CLAIM_PATH_NOT_IN_TARGET", claim.claim_id)]
    reasons = []
    if evidence.quote_found is False:
        reasons.append(reason("CLAIM_QUOTE_NOT_FOUND", claim.claim_id))
    if evidence.symbol_found is False:
        reasons.append(reason("CLAIM_SYMBOL_NOT_FOUND", claim.claim_id))
    return reasons


def docs_evidence_map(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """Every claim cites a path of the target whose text holds its quote and symbol (``evidence``); ids are unique."""
    evidence_map, reasons = parse_output(output_text, EvidenceMap, spec)
    context, input_reasons = parse_input(inputs, CONTEXT_REF, ContextPayload)
    reasons += input_reasons
    if evidence_map is None:
        return reasons
    if not evidence_map.claims:
        reasons.append(reason("EVIDENCE_MAP_EMPTY"))
    id_counts = Counter(claim.claim_id for claim in evidence_map.claims)
    reasons += [reason("CLAIM_DUPLICATE_ID", claim_id) for claim_id, count in id_counts.items() if count > 1]
    if context is not None:
        for claim in evidence_map.claims:
            reasons += _claim_evidence_reasons(claim, context)
    return reasons


# --- verification ---------------------------------------------------------------------


def docs_verification_report(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """At least one verified claim; every claim of the evidence map classified once, with a reason code if rejected."""
    report, reasons = parse_output(output_text, VerificationReport, spec)
    evidence_map, input_reasons = parse_input(inputs, EVIDENCE_MAP_REF, EvidenceMap)
    reasons += input_reasons
    if report is None:
        return reasons
    verified, rejected = set(report.verified_claims), set(report.rejected_claims)
    if not verified:
        reasons.append(reason("NO_VERIFIED_CLAIMS"))
    reasons += [reason("CLAIM_IN_BOTH_SETS", claim_id) for claim_id in verified & rejected]
    reasons += [
        reason("REJECTION_WITHOUT_REASON", claim_id)
        for claim_id in rejected
        if not (report.reasons.get(claim_id) or "").strip()
    ]
    reasons += [
        reason("INVALID_REASON_CODE", claim_id)
        for claim_id, code in report.reasons.items()
        if code.strip() and not _REASON_CODE.fullmatch(code)
    ]
    if evidence_map is not None:
        known = {claim.claim_id for claim in evidence_map.claims}
        referenced = verified | rejected | set(report.reasons)
        reasons += [reason("UNKNOWN_CLAIM_ID", claim_id) for claim_id in referenced - known]
        reasons += [reason("UNCLASSIFIED_CLAIM", claim_id) for claim_id in known - verified - rejected]
    return reasons


# --- readme_struct --------------------------------------------------------------------


def _rejected_statements(evidence_map: EvidenceMap, report: VerificationReport) -> dict[str, str]:
    """claim_id -> comparison form of each rejected claim's statement."""
    rejected = set(report.rejected_claims)
    statements = {}
    for claim in evidence_map.claims:
        statement = collapse_whitespace(claim.statement).strip(_STATEMENT_EDGES).casefold()
        # A statement that is only punctuation would "occur" in every text.
        if claim.claim_id in rejected and statement:
            statements[claim.claim_id] = statement
    return statements


def docs_readme_struct(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """A title, no evidence-map heading, and no rejected claim's statement in the struct."""
    # Extra keys (an "evidence_map" section among them) are schema violations of ReadmeStruct.
    struct, reasons = parse_output(output_text, ReadmeStruct, spec)
    evidence_map, evidence_reasons = parse_input(inputs, EVIDENCE_MAP_REF, EvidenceMap)
    report, report_reasons = parse_input(inputs, VERIFICATION_REPORT_REF, VerificationReport)
    reasons += evidence_reasons + report_reasons
    if struct is None:
        return reasons
    if not struct.title.strip():
        reasons.append(reason("TITLE_MISSING"))
    sections = struct.sections()
    for body in sections.values():
        reasons += evidence_heading_reasons(parse_headings(body))
    if evidence_map is not None and report is not None:
        texts = [collapse_whitespace(text).casefold() for text in (struct.title, *sections.values())]
        reasons += [
            reason("REJECTED_CLAIM_TEXT", claim_id)
            for claim_id, statement in _rejected_statements(evidence_map, report).items()
            if any(statement in text for text in texts)
        ]
    return reasons


# --- style_refine ---------------------------------------------------------------------


def _title_reasons(final_text: str, headings: Sequence[Heading], title: str) -> list[str]:
    """The first non-blank line is ``# <title>``."""
    first_line = next((index for index, line in enumerate(split_lines(final_text)) if line.strip()), None)
    leading = next((h for h in headings if h.line == first_line and h.level == 1), None)
    if leading is None:
        return [reason("TITLE_MISSING")]
    # The renderer escapes Markdown punctuation in the title; a heading written without
    # the escapes names the same title.
    if collapse_whitespace(unescape_inline(leading.text)) != collapse_whitespace(title):
        return [reason("TITLE_MISMATCH")]
    return []


def docs_readme_final(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The markdown starts with ``# title``, keeps every non-empty struct section as a ``##`` heading,
    adds no evidence-map heading, and drifts from the struct at most ``rules.max_drift``.

    Raises GateError GATE_RULES_INVALID for a ``rules.max_drift`` outside [0, 1].
    """
    max_drift = max_drift_rule(spec)
    headings = parse_headings(output_text)
    reasons = evidence_heading_reasons(headings)
    struct, input_reasons = parse_input(inputs, README_STRUCT_REF, ReadmeStruct)
    reasons += input_reasons
    if struct is None:
        return reasons
    required = {key: README_SECTIONS[key] for key in struct.sections()}
    reasons += _title_reasons(output_text, headings, struct.title)
    reasons += section_reasons(headings, required, level=2)
    reasons += drift_reasons(struct, output_text, max_drift)
    return reasons


def no_semantic_drift(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The markdown output keeps the ``readme_struct`` input's words (``rules.max_drift``).

    Raises GateError GATE_RULES_INVALID for a ``rules.max_drift`` outside [0, 1].
    """
    max_drift = max_drift_rule(spec)
    struct, reasons = parse_input(inputs, README_STRUCT_REF, ReadmeStruct)
    if struct is None:
        return reasons
    return drift_reasons(struct, output_text, max_drift)


# Gate type -> evaluator, registered by the plug-in (reasons sorted and unique).
GATES: dict[str, Evaluator] = {
    "docs_evidence_map": docs_evidence_map,
    "docs_verification_report": docs_verification_report,
    "docs_readme_struct": docs_readme_struct,
    "docs_readme_final": docs_readme_final,
    "no_semantic_drift": no_semantic_drift,
}
