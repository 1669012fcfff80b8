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

from pydantic import Field

from wf_pipeline.errors import MetadataError
from wf_pipeline.gates.findings import (
    FindingRule,
    FindingTable,
    GateSubject,
    claim_pointer,
    fixed_pointer,
    output_line,
    output_pointer,
    section_pointer,
)
from wf_pipeline.gates.generic import (
    Heading,
    heading_slug,
    normalize_heading,
    parse_headings,
    parse_input,
    parse_output,
    reason,
    reason_part,
    section_reasons,
)
from wf_pipeline.gates.registry import Evaluator, GateSpecLike
from wf_pipeline.gates.rules import GateRules, resolved_rules
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload, parse_json_output
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
DEFAULT_MIN_VERIFIED_CLAIMS = 1
DEFAULT_MAX_REJECTED_SHARE = 1.0

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


# --- rules (docs/profiles.md lists them with their defaults) ---------------------------


class DriftRules(GateRules):
    """Rules of ``no_semantic_drift`` and ``docs_readme_final``.

    Attributes:
        max_drift: largest share (0 to 1) of the struct's section words the final text may
            lose (`drift`); default 0.15.
    """

    max_drift: float = Field(default=DEFAULT_MAX_DRIFT, ge=0, le=1)


class VerificationRules(GateRules):
    """Rules of ``docs_verification_report``.

    Attributes:
        min_verified_claims: fewest verified claims a report may have (an integer >= 0);
            default 1.
        max_rejected_share: largest share (0 to 1) of the classified claims that may be
            rejected; default 1.0 (any share).
    """

    min_verified_claims: int = Field(default=DEFAULT_MIN_VERIFIED_CLAIMS, ge=0)
    max_rejected_share: float = Field(default=DEFAULT_MAX_REJECTED_SHARE, ge=0, le=1)


def max_drift_rule(spec: GateSpecLike) -> float:
    """``rules.max_drift`` (default 0.15), a fraction. Raises GateError GATE_RULES_INVALID outside [0, 1]."""
    return resolved_rules(DriftRules, spec.gate_id, spec.rules).max_drift


# --- drift ----------------------------------------------------------------------------


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
    """At least ``rules.min_verified_claims`` verified claims, at most ``rules.max_rejected_share``
    of the classified claims rejected; every claim of the evidence map classified once, with a
    reason code if rejected.

    Raises GateError GATE_RULES_INVALID for rules `VerificationRules` refuses.
    """
    report, reasons = parse_output(output_text, VerificationReport, spec)
    evidence_map, input_reasons = parse_input(inputs, EVIDENCE_MAP_REF, EvidenceMap)
    reasons += input_reasons
    if report is None:
        return reasons
    thresholds = resolved_rules(VerificationRules, spec.gate_id, spec.rules)
    verified, rejected = set(report.verified_claims), set(report.rejected_claims)
    if not verified and thresholds.min_verified_claims > 0:
        reasons.append(reason("NO_VERIFIED_CLAIMS"))
    elif len(verified) < thresholds.min_verified_claims:
        reasons.append(
            reason("VERIFIED_CLAIMS_BELOW_MIN", f"{len(verified)}<{thresholds.min_verified_claims}")
        )
    classified = len(verified | rejected)
    rejected_share = len(rejected) / classified if classified else 0.0
    if rejected_share > thresholds.max_rejected_share:
        reasons.append(
            reason("REJECTED_SHARE_ABOVE_MAX", f"{rejected_share:.3f}>{thresholds.max_rejected_share:g}")
        )
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


# --- findings: reason code -> rule id, pointer, hint, per gate type -------------------------


def _claim_in_output(parts: tuple[str, ...], subject: GateSubject) -> Claim | None:
    # The claim a reason names, matched the way the reason named it (`reason_part`).
    if not parts:
        return None
    try:
        evidence_map = parse_json_output(subject.output_text, EvidenceMap)
    except MetadataError:
        return None
    return next((c for c in evidence_map.claims if reason_part(c.claim_id) == parts[0]), None)


def cited_path_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``<cited path>#<claim id>`` when the claim cites a path of the target, else ``claim:<id>``.

    Only a path the target's context holds is shown (a tree path, never text a model made up).
    """
    found = _claim_in_output(parts, subject)
    context_text = subject.inputs.get(CONTEXT_REF)
    if found is None or not isinstance(context_text, str):
        return claim_pointer(parts, subject)
    try:
        context = parse_json_output(context_text, ContextPayload)
    except MetadataError:
        return claim_pointer(parts, subject)
    path = found.evidence_path
    if context.file(path) is None and context.child(path) is None:
        return claim_pointer(parts, subject)
    return f"{path}#{parts[0]}"


def _output_heading_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    # The first heading of the markdown output whose slug the reason names.
    for heading in parse_headings(subject.output_text):
        if parts and _EVIDENCE_HEADINGS.get(normalize_heading(heading.text)) == parts[0]:
            return output_line(heading.line)
    return "output"


def _struct_heading_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    # The first section of the struct whose body holds the evidence heading the reason names.
    try:
        struct = parse_json_output(subject.output_text, ReadmeStruct)
    except MetadataError:
        return "output"
    for key, body in struct.sections().items():
        slugs = {_EVIDENCE_HEADINGS.get(normalize_heading(h.text)) for h in parse_headings(body)}
        if parts and parts[0] in slugs:
            return section_pointer((key,), subject)
    return "output"


def _title_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    # The first non-blank line of the markdown output: where the title heading must be.
    first = next((i for i, line in enumerate(split_lines(subject.output_text)) if line.strip()), None)
    return output_line(first)


_NO_EVIDENCE_HEADING_HINT = "Remove the evidence-map heading; the README must not show the evidence map."

EVIDENCE_FINDINGS: FindingTable = {
    "EVIDENCE_MAP_EMPTY": FindingRule(
        "claims.non_empty", fixed_pointer("field:claims"), "The evidence map has no claims."
    ),
    "CLAIM_DUPLICATE_ID": FindingRule("claims.unique_ids", claim_pointer, "Two claims share this id."),
    "CLAIM_PATH_NOT_IN_TARGET": FindingRule(
        "evidence.path_in_target", claim_pointer, "The claim cites a path the target does not have."
    ),
    "CLAIM_CITES_OMITTED_FILE": FindingRule(
        "evidence.path_readable", cited_path_pointer, "The cited file was left out of the context."
    ),
    "CLAIM_QUOTE_NOT_FOUND": FindingRule(
        "evidence.quote_occurs", cited_path_pointer, "The quote does not occur in the cited file."
    ),
    "CLAIM_SYMBOL_NOT_FOUND": FindingRule(
        "evidence.symbol_occurs", cited_path_pointer, "The symbol does not occur in the cited file."
    ),
}

VERIFICATION_FINDINGS: FindingTable = {
    "NO_VERIFIED_CLAIMS": FindingRule(
        "min_verified_claims", fixed_pointer("field:verified_claims"), "No claim was verified."
    ),
    "VERIFIED_CLAIMS_BELOW_MIN": FindingRule(
        "min_verified_claims",
        fixed_pointer("field:verified_claims"),
        "Fewer claims were verified than the profile requires.",
    ),
    "REJECTED_SHARE_ABOVE_MAX": FindingRule(
        "max_rejected_share",
        fixed_pointer("field:rejected_claims"),
        "More of the claims were rejected than the profile allows.",
    ),
    "CLAIM_IN_BOTH_SETS": FindingRule(
        "claims.classified_once", claim_pointer, "The claim is both verified and rejected."
    ),
    "UNCLASSIFIED_CLAIM": FindingRule(
        "claims.classified_once", claim_pointer, "The claim is neither verified nor rejected."
    ),
    "UNKNOWN_CLAIM_ID": FindingRule(
        "claims.known", claim_pointer, "The evidence map has no claim with this id."
    ),
    "REJECTION_WITHOUT_REASON": FindingRule(
        "rejections.reason_code", claim_pointer, "The rejected claim has no reason code."
    ),
    "INVALID_REASON_CODE": FindingRule(
        "rejections.reason_code", claim_pointer, "The rejection's reason is not an UPPER_SNAKE code."
    ),
}

STRUCT_FINDINGS: FindingTable = {
    "TITLE_MISSING": FindingRule("title.present", fixed_pointer("field:title"), "The struct has no title."),
    "EVIDENCE_HEADING_PRESENT": FindingRule(
        "no_evidence_heading", _struct_heading_pointer, _NO_EVIDENCE_HEADING_HINT
    ),
    "REJECTED_CLAIM_TEXT": FindingRule(
        "no_rejected_claim_text", claim_pointer, "The struct repeats the statement of a rejected claim."
    ),
}

FINAL_FINDINGS: FindingTable = {
    "TITLE_MISSING": FindingRule(
        "title.leads", _title_pointer, "The README does not start with a level-1 title heading."
    ),
    "TITLE_MISMATCH": FindingRule(
        "title.leads", _title_pointer, "The README's title differs from the struct's title."
    ),
    "SECTION_MISSING": FindingRule(
        "sections.survive", section_pointer, "A non-empty section of the struct has no level-2 heading."
    ),
    "EVIDENCE_HEADING_PRESENT": FindingRule(
        "no_evidence_heading", _output_heading_pointer, _NO_EVIDENCE_HEADING_HINT
    ),
    "DRIFT_ABOVE_THRESHOLD": FindingRule(
        "max_drift", output_pointer, "The README lost more of the struct's words than the profile allows."
    ),
}

DRIFT_FINDINGS: FindingTable = {"DRIFT_ABOVE_THRESHOLD": FINAL_FINDINGS["DRIFT_ABOVE_THRESHOLD"]}

# Gate type -> rules model, registered by the plug-in; a gate type not listed takes no rules.
RULES: dict[str, type[GateRules]] = {
    "docs_verification_report": VerificationRules,
    "docs_readme_final": DriftRules,
    "no_semantic_drift": DriftRules,
}

# Gate type -> findings table, registered by the plug-in.
FINDINGS: dict[str, FindingTable] = {
    "docs_evidence_map": EVIDENCE_FINDINGS,
    "docs_verification_report": VERIFICATION_FINDINGS,
    "docs_readme_struct": STRUCT_FINDINGS,
    "docs_readme_final": FINAL_FINDINGS,
    "no_semantic_drift": DRIFT_FINDINGS,
}

# Gate type -> evaluator, registered by the plug-in (reasons sorted and unique).
GATES: dict[str, Evaluator] = {
    "docs_evidence_map": docs_evidence_map,
    "docs_verification_report": docs_verification_report,
    "docs_readme_struct": docs_readme_struct,
    "docs_readme_final": docs_readme_final,
    "no_semantic_drift": no_semantic_drift,
}
