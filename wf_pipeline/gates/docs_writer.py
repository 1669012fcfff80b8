"""Gates of the docs_writer_thread_v1 profile, one per turn.

Each parses the turn's output and inputs with the payload models and then checks what
the schema alone cannot: that evidence really is in the target, that the verification
covers the evidence map, that rejected claims stay out of the README, and that the
final markdown keeps the struct's sections and words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from wf_pipeline.gates.generic import (
    README_STRUCT_REF,
    Heading,
    builtin_gate,
    drift_reasons,
    evidence_heading_reasons,
    markdown_lines,
    max_drift_rule,
    parse_headings,
    parse_input,
    parse_output,
    reason,
    section_reasons,
)
from wf_pipeline.gates.registry import GateSpecLike
from wf_pipeline.metadata.payloads import (
    README_SECTIONS,
    Claim,
    ContextPayload,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
)

CONTEXT_REF = "context"
EVIDENCE_MAP_REF = "evidence_map"
VERIFICATION_REPORT_REF = "verification_report"

_REASON_CODE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
# Sentence punctuation around a statement is not part of what would leak.
_STATEMENT_EDGES = " \t.,;:!?"


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


# --- evidence_gather ------------------------------------------------------------------


def _quote_occurs(quote: str, text: str) -> bool:
    # Line wrapping and indentation may differ between a quote and its source.
    needle = _collapse_whitespace(quote)
    return bool(needle) and needle in _collapse_whitespace(text)


def _word_occurs(word: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def _symbol_occurs(symbol: str, text: str) -> bool:
    """The symbol as a whole word; a dotted one (``Config.load``) may also occur part by part."""
    name = symbol.strip().removesuffix("()")
    if not name:
        return False
    if _word_occurs(name, text):
        return True
    parts = name.split(".")
    return len(parts) > 1 and all(part and _word_occurs(part, text) for part in parts)


def _claim_evidence_reasons(claim: Claim, context: ContextPayload) -> list[str]:
    cited_file = context.file(claim.evidence_path)
    if cited_file is not None and cited_file.omitted is not None:
        return [reason("CLAIM_CITES_OMITTED_FILE", claim.claim_id)]
    if cited_file is None and context.child(claim.evidence_path) is None:
        return [reason("CLAIM_PATH_NOT_IN_TARGET", claim.claim_id)]
    # A child directory without a README has no text any quote or symbol could be in.
    text = context.evidence_text(claim.evidence_path) or ""
    reasons = []
    if claim.evidence_quote and not _quote_occurs(claim.evidence_quote, text):
        reasons.append(reason("CLAIM_QUOTE_NOT_FOUND", claim.claim_id))
    if claim.evidence_symbol and not _symbol_occurs(claim.evidence_symbol, text):
        reasons.append(reason("CLAIM_SYMBOL_NOT_FOUND", claim.claim_id))
    return reasons


@builtin_gate("docs_evidence_map")
def docs_evidence_map(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
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


@builtin_gate("docs_verification_report")
def docs_verification_report(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
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
        statement = _collapse_whitespace(claim.statement).strip(_STATEMENT_EDGES).casefold()
        # A statement that is only punctuation would "occur" in every text.
        if claim.claim_id in rejected and statement:
            statements[claim.claim_id] = statement
    return statements


@builtin_gate("docs_readme_struct")
def docs_readme_struct(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
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
        texts = [_collapse_whitespace(text).casefold() for text in (struct.title, *sections.values())]
        reasons += [
            reason("REJECTED_CLAIM_TEXT", claim_id)
            for claim_id, statement in _rejected_statements(evidence_map, report).items()
            if any(statement in text for text in texts)
        ]
    return reasons


# --- style_refine ---------------------------------------------------------------------


def _title_reasons(final_text: str, headings: Sequence[Heading], title: str) -> list[str]:
    """The first non-blank line is ``# <title>``."""
    first_line = next((index for index, line in enumerate(markdown_lines(final_text)) if line.strip()), None)
    leading = next((h for h in headings if h.line == first_line and h.level == 1), None)
    if leading is None:
        return [reason("TITLE_MISSING")]
    if _collapse_whitespace(leading.text) != _collapse_whitespace(title):
        return [reason("TITLE_MISMATCH")]
    return []


@builtin_gate("docs_readme_final")
def docs_readme_final(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
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
