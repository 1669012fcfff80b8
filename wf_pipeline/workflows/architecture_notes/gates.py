"""Gates of the architecture notes, one per turn.

Each parses the turn's output and inputs with the payload models and checks what the
schema alone cannot, with the same evidence rules the turns use
(`wf_pipeline.text.evidence.cited_evidence`, through ``analysis.claim_problem``):

- ``arch_module_graph``: every edge's import line is in the cited module;
- ``arch_entry_points``: every entry point's declaring line is in the cited file;
- ``arch_synthesis``: claim ids unique, every claim's evidence holds;
- ``arch_verification`` (``verification`` and ``reverify``): every claim classified
  exactly once, the share matches, and it is at least ``rules.min_verified_share``;
- ``arch_notes``: the title line, the notice exactly when ``reverify``'s report is an
  input, and every code span of the notes a path of the tree. Notes that took the
  low-confidence path also get the non-blocking finding ``NOTES_NEED_REVIEW``, so their
  verdict is ``warn`` (`wf_pipeline.gates.registry.verdict_outcome`) when nothing else is
  wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from wf_pipeline.gates.findings import (
    FindingRule,
    FindingTable,
    GateSubject,
    claim_pointer,
    fixed_pointer,
    output_line,
    output_pointer,
)
from wf_pipeline.gates.generic import parse_input, parse_output, reason
from wf_pipeline.gates.registry import Evaluator, GateSpecLike
from wf_pipeline.gates.rules import GateRules, resolved_rules
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.text.evidence import cited_evidence, evidence_view
from wf_pipeline.workflows.architecture_notes.analysis import claim_problem, package_of
from wf_pipeline.workflows.architecture_notes.offline import (
    REVERIFICATION_REF,
    SYNTHESIS_REF,
    took_low_confidence_path,
)
from wf_pipeline.workflows.architecture_notes.payloads import (
    ArchitectureSynthesis,
    ArchVerification,
    EntryPoints,
    ModuleGraph,
)
from wf_pipeline.workflows.architecture_notes.render import NOTICE_MARKER, title_line

# Single-backtick code spans: the notes write every path as one (`render`).
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


class VerificationRules(GateRules):
    """Rules of ``arch_verification``.

    Attributes:
        min_verified_share: smallest share (0 to 1) of the claims that must hold; default 0
            (any share: the low-confidence branch, not this gate, deals with a low one).
    """

    min_verified_share: float = Field(default=0.0, ge=0, le=1)


def _context(inputs: Mapping[str, str]) -> tuple[ContextPayload | None, list[str]]:
    context, reasons = parse_input(inputs, CONTEXT_REF, ContextPayload)
    return (evidence_view(context) if context is not None else None), reasons


def _cited_items(
    output_text: str, inputs: Mapping[str, str], spec: GateSpecLike, model: Any, items: str, code: str
) -> list[str]:
    """Parse the output as ``model``; each entry of its ``items`` list must quote its cited file (``code``:<n>)."""
    parsed, reasons = parse_output(output_text, model, spec)
    context, more = _context(inputs)
    reasons += more
    if parsed is None or context is None:
        return reasons
    for number, item in enumerate(getattr(parsed, items), start=1):
        if not cited_evidence(context, item.evidence_path, item.evidence_quote).holds:
            reasons.append(reason(code, number))
    return reasons


def arch_module_graph(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """Every edge's quote is in its cited module (EDGE_EVIDENCE_MISSING:<n>, 1-based)."""
    return _cited_items(output_text, inputs, spec, ModuleGraph, "edges", "EDGE_EVIDENCE_MISSING")


def arch_entry_points(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """Every entry point's declaring line is in its cited file (ENTRY_EVIDENCE_MISSING:<n>, 1-based)."""
    return _cited_items(output_text, inputs, spec, EntryPoints, "entry_points", "ENTRY_EVIDENCE_MISSING")


def arch_synthesis(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """Claim ids unique (CLAIM_DUPLICATE_ID:<id>); each claim's evidence holds (CLAIM_EVIDENCE:<id>:<reason>)."""
    synthesis, reasons = parse_output(output_text, ArchitectureSynthesis, spec)
    context, more = _context(inputs)
    reasons += more
    if synthesis is None or context is None:
        return reasons
    seen: set[str] = set()
    for claim in synthesis.claims:
        if claim.claim_id in seen:
            reasons.append(reason("CLAIM_DUPLICATE_ID", claim.claim_id))
        seen.add(claim.claim_id)
        problem = claim_problem(claim, context)
        if problem is not None:
            reasons.append(reason("CLAIM_EVIDENCE", claim.claim_id, problem))
    return reasons


def arch_verification(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """Every synthesis claim classified once (CLAIM_UNCLASSIFIED, CLAIM_UNKNOWN, CLAIM_CLASSIFIED_TWICE),
    the share right (SHARE_MISMATCH), and at least ``rules.min_verified_share`` (VERIFIED_SHARE_BELOW_MIN).

    Raises GateError GATE_RULES_INVALID for rules `VerificationRules` refuses.
    """
    report, reasons = parse_output(output_text, ArchVerification, spec)
    synthesis, more = parse_input(inputs, SYNTHESIS_REF, ArchitectureSynthesis)
    reasons += more
    if report is None or synthesis is None:
        return reasons
    rules = resolved_rules(VerificationRules, spec.gate_id, spec.rules)
    ids = [claim.claim_id for claim in synthesis.claims]
    classified = list(report.verified_claims) + [r.claim_id for r in report.rejected_claims]
    for claim_id in sorted(set(ids) - set(classified)):
        reasons.append(reason("CLAIM_UNCLASSIFIED", claim_id))
    for claim_id in sorted(set(classified) - set(ids)):
        reasons.append(reason("CLAIM_UNKNOWN", claim_id))
    for claim_id in sorted({c for c in classified if classified.count(c) > 1}):
        reasons.append(reason("CLAIM_CLASSIFIED_TWICE", claim_id))
    share = len(set(report.verified_claims) & set(ids)) / len(ids) if ids else 1.0
    if abs(share - report.verified_share) > 1e-6:
        reasons.append(reason("SHARE_MISMATCH", f"{report.verified_share:g}!={share:.6f}"))
    if share < rules.min_verified_share:
        reasons.append(reason("VERIFIED_SHARE_BELOW_MIN", f"{share:.3f}<{rules.min_verified_share:g}"))
    return reasons


def _notice_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``output:<line>`` of the notice, ``input:architecture_reverification`` when it is missing."""
    for number, line in enumerate(subject.output_text.splitlines()):
        if NOTICE_MARKER in line:
            return output_line(number)
    return f"input:{REVERIFICATION_REF}"


def _tree_paths(context: ContextPayload) -> set[str]:
    paths = {"."}
    for file in context.files:
        paths.add(file.path)
        folder = package_of(file.path)
        while folder != ".":
            paths.add(folder + "/")
            folder = package_of(folder)
    return paths


def arch_notes(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The notes' title (TITLE_MISSING), the notice exactly when reverify ran (NOTICE_MISSING,
    NOTICE_UNEXPECTED), and every code span a path of the tree (PATH_NOT_IN_TREE:<n>, 1-based).

    When reverify ran (`took_low_confidence_path`), NOTES_NEED_REVIEW too: a non-blocking
    finding (``FINDINGS``), so that notes which are otherwise fine get the verdict ``warn``.
    """
    synthesis, reasons = parse_input(inputs, SYNTHESIS_REF, ArchitectureSynthesis)
    context, more = _context(inputs)
    reasons += more
    if synthesis is None or context is None:
        return reasons
    lines = output_text.splitlines()
    if not lines or lines[0].strip() != title_line(synthesis):
        reasons.append(reason("TITLE_MISSING"))
    has_notice = NOTICE_MARKER in output_text
    low_confidence = took_low_confidence_path(inputs)
    if low_confidence:
        reasons.append(reason("NOTES_NEED_REVIEW"))
    if low_confidence and not has_notice:
        reasons.append(reason("NOTICE_MISSING"))
    if not low_confidence and has_notice:
        reasons.append(reason("NOTICE_UNEXPECTED"))
    known = _tree_paths(context)
    spans = _CODE_SPAN.findall(output_text)
    for number, span in enumerate(spans, start=1):
        if span not in known:
            reasons.append(reason("PATH_NOT_IN_TREE", number))
    return reasons


RULES: dict[str, type[GateRules]] = {"arch_verification": VerificationRules}

FINDINGS: dict[str, FindingTable] = {
    "arch_module_graph": {
        "EDGE_EVIDENCE_MISSING": FindingRule(
            "edges.evidence",
            fixed_pointer("field:edges"),
            "The edge's import line is not in the cited module.",
        ),
    },
    "arch_entry_points": {
        "ENTRY_EVIDENCE_MISSING": FindingRule(
            "entry_points.evidence",
            fixed_pointer("field:entry_points"),
            "The entry point's declaring line is not in the cited file.",
        ),
    },
    "arch_synthesis": {
        "CLAIM_DUPLICATE_ID": FindingRule("claims.unique_ids", claim_pointer, "Two claims share this id."),
        "CLAIM_EVIDENCE": FindingRule(
            "claims.evidence", claim_pointer, "The claim's evidence does not hold."
        ),
    },
    "arch_verification": {
        "CLAIM_UNCLASSIFIED": FindingRule("claims.classified", claim_pointer, "The claim is not classified."),
        "CLAIM_UNKNOWN": FindingRule("claims.classified", claim_pointer, "No synthesis claim has this id."),
        "CLAIM_CLASSIFIED_TWICE": FindingRule(
            "claims.classified", claim_pointer, "The claim is classified twice."
        ),
        "SHARE_MISMATCH": FindingRule(
            "verified_share.consistent",
            fixed_pointer("field:verified_share"),
            "The share does not match the ids.",
        ),
        "VERIFIED_SHARE_BELOW_MIN": FindingRule(
            "verified_share.min", fixed_pointer("field:verified_share"), "Too few claims hold."
        ),
    },
    "arch_notes": {
        "TITLE_MISSING": FindingRule(
            "notes.title", output_pointer, "The notes do not open with their title."
        ),
        "NOTICE_MISSING": FindingRule(
            "notes.notice", output_pointer, "Re-verified notes must open with the needs-review notice."
        ),
        "NOTICE_UNEXPECTED": FindingRule(
            "notes.notice", output_pointer, "Only re-verified notes carry the needs-review notice."
        ),
        # Not a fault of the notes: they took the low-confidence path and say so. It never
        # fails the gate; alone, it makes the verdict warn.
        "NOTES_NEED_REVIEW": FindingRule(
            "notes.needs_review",
            _notice_pointer,
            "The notes took the low-confidence path (reverify ran): review them before relying on them.",
            blocking=False,
        ),
        "PATH_NOT_IN_TREE": FindingRule(
            "notes.paths", output_pointer, "A code span names no path of the tree."
        ),
    },
}

GATES: dict[str, Evaluator] = {
    "arch_module_graph": arch_module_graph,
    "arch_entry_points": arch_entry_points,
    "arch_synthesis": arch_synthesis,
    "arch_verification": arch_verification,
    "arch_notes": arch_notes,
}
