"""Gate findings: each reason of a verdict as a rule id, a code, an evidence pointer and a hint.

Evaluators return reason strings (``CODE`` or ``CODE:part[:part]``, see
`wf_pipeline.gates.generic.reason`). A finding is derived from one reason in one place,
`derive_findings`, through a table per gate type: reason code -> `FindingRule` (the rule
the reason breaks, how to point at its evidence, a fixed hint). The generic codes every
JSON gate shares (schema, required fields, inputs) have one table here; a gate type's own
table is registered with its evaluator (`wf_pipeline.gates.registry.register`).

Pointers (never payload text):

- ``claim:<id>``: a claim of the evidence map, by id;
- ``<path>:<line>``: a line (1-based) of a file; ``output:<line>`` a line of the turn's output;
- ``<path>#<claim id>``: a file of the target a claim cites, when no line is known;
- ``section:<key>``, ``field:<dotted path>``, ``input:<ref>``: a section, an output field, an input;
- ``output``: the output as a whole (a measure over all of it, such as drift).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# Reason parts after the code, and the texts the gate judged: a pointer is computed from these.
Pointer = Callable[[tuple[str, ...], "GateSubject"], str]

#: Rule id of a reason code no table names (a gate that emits it is missing a table entry).
UNMAPPED_RULE = "unmapped"
_UNMAPPED_HINT = "No diagnosis is registered for this reason code."


@dataclass(frozen=True)
class GateSubject:
    """What a gate judged: the turn's output text and its inputs' texts by input ref.

    Pointer functions read it to find a line or a path; they never copy text out of it.
    """

    output_text: str
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class Finding:
    """One reason of a gate verdict, ready for triage.

    Attributes:
        rule_id: the rule the reason breaks: a rule name of the gate type's ``rules``
            (``max_drift``) or a fixed check's id (``evidence.quote_occurs``).
        code: the reason code (``CLAIM_QUOTE_NOT_FOUND``), without its parts.
        pointer: where the evidence is (see the module docstring): ids, paths and lines only.
        hint: a short fixed sentence per code; never payload text.
        reason: the reason as the evaluator gave it, with its figures
            (``VERIFIED_CLAIMS_BELOW_MIN:1<3``): codes, ids and numbers only.
    """

    rule_id: str
    code: str
    pointer: str
    hint: str
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        """``{"rule_id", "code", "pointer", "hint", "reason"}``, the shape the gate record keeps."""
        return {
            "rule_id": self.rule_id,
            "code": self.code,
            "pointer": self.pointer,
            "hint": self.hint,
            "reason": self.reason or self.code,
        }


@dataclass(frozen=True)
class FindingRule:
    """How one reason code becomes a finding.

    Attributes:
        rule_id: the rule the code belongs to.
        pointer: computes the pointer from the reason's parts and the judged texts.
        hint: the fixed sentence shown with it.
        blocking: whether the reason can fail the gate (default). A non-blocking reason is
            a finding for a reader, never a failure: alone, it makes the verdict ``warn``
            (`wf_pipeline.gates.registry.verdict_outcome`).
    """

    rule_id: str
    pointer: Pointer
    hint: str
    blocking: bool = True


FindingTable = Mapping[str, FindingRule]


def _first(parts: tuple[str, ...]) -> str:
    return parts[0] if parts else "-"


def claim_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``claim:<id>`` of the reason's first part."""
    return f"claim:{_first(parts)}"


def section_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``section:<key>`` of the reason's first part."""
    return f"section:{_first(parts)}"


def field_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``field:<dotted path>`` of the reason's first part (``field:<root>`` for the whole output)."""
    return f"field:{_first(parts)}"


def input_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``input:<ref>`` of the reason's first part."""
    return f"input:{_first(parts)}"


def output_pointer(parts: tuple[str, ...], subject: GateSubject) -> str:
    """``output``: the reason is about the output as a whole."""
    return "output"


def fixed_pointer(pointer: str) -> Pointer:
    """A pointer function that always answers ``pointer`` (e.g. ``field:verified_claims``)."""

    def point(parts: tuple[str, ...], subject: GateSubject) -> str:
        return pointer

    return point


def output_line(line: int | None) -> str:
    """``output:<line>`` for a 0-based line index, ``output`` when it is None."""
    return "output" if line is None else f"output:{line + 1}"


# The codes every gate that parses JSON output or reads inputs may give (`gates.generic`).
GENERIC_FINDINGS: dict[str, FindingRule] = {
    "OUTPUT_NOT_JSON": FindingRule("output.json", output_pointer, "The output is not one JSON object."),
    "OUTPUT_SCHEMA_VIOLATION": FindingRule(
        "output.schema", field_pointer, "The field does not match the output type's schema."
    ),
    "FIELD_MISSING": FindingRule("required_fields", field_pointer, "A required field is missing."),
    "FIELD_EMPTY": FindingRule("required_fields", field_pointer, "A required field is empty."),
    "GATE_INPUT_MISSING": FindingRule("inputs", input_pointer, "The turn did not receive this input."),
    "GATE_INPUT_INVALID": FindingRule("inputs", input_pointer, "This input does not parse as its type."),
    "SECTION_MISSING": FindingRule(
        "sections", section_pointer, "The output has no heading for this section."
    ),
}


def _rule_of(code: str, table: FindingTable) -> FindingRule | None:
    # The gate type's table first, then the generic one: the one lookup of a reason's rule.
    return table.get(code) or GENERIC_FINDINGS.get(code)


def reason_blocks(text: str, table: FindingTable) -> bool:
    """Whether the reason ``text`` (``CODE[:part...]``) can fail its gate.

    Args:
        text: one reason as the evaluator gave it.
        table: the gate type's code -> `FindingRule` table.

    Returns:
        The ``blocking`` of the code's rule (the gate type's table, then `GENERIC_FINDINGS`);
        True for a code no table names, so an unmapped reason never passes unnoticed.
        Raises nothing.
    """
    rule = _rule_of(text.split(":", 1)[0], table)
    return rule is None or rule.blocking


def derive_findings(reasons: Sequence[str], table: FindingTable, subject: GateSubject) -> tuple[Finding, ...]:
    """The findings of ``reasons``: the gate type's ``table`` first, then `GENERIC_FINDINGS`.

    Args:
        reasons: the verdict's reason strings (``CODE[:part...]``).
        table: the gate type's code -> `FindingRule` table.
        subject: the texts the gate judged, for pointers that need a path or a line.

    Returns:
        One `Finding` per distinct reason, sorted by (rule id, code, pointer, hint). A code no
        table names gets rule id ``unmapped``, pointer ``-`` and a fixed hint. Raises nothing
        a pointer function does not raise (the shipped ones raise nothing).
    """
    findings = set()
    for text in reasons:
        code, *parts = text.split(":")
        rule = _rule_of(code, table)
        if rule is None:
            findings.add(Finding(UNMAPPED_RULE, code, "-", _UNMAPPED_HINT, text))
            continue
        findings.add(Finding(rule.rule_id, code, rule.pointer(tuple(parts), subject), rule.hint, text))
    return tuple(sorted(findings, key=lambda f: (f.rule_id, f.code, f.pointer, f.hint)))


def group_by_rule(findings: Sequence[Mapping[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Findings (as dicts) grouped by ``rule_id``, rules sorted, each group in the given order.

    Returns:
        rule id -> ``[{"code", "reason", "pointer", "hint"}]`` (``reason``: the code with its
        figures; the code alone for a finding recorded before reasons were kept). Raises nothing.
    """
    grouped: dict[str, list[dict[str, str]]] = {}
    for finding in findings:
        grouped.setdefault(finding["rule_id"], []).append(
            {
                "code": finding["code"],
                "reason": finding.get("reason") or finding["code"],
                "pointer": finding["pointer"],
                "hint": finding["hint"],
            }
        )
    return {rule_id: grouped[rule_id] for rule_id in sorted(grouped)}
