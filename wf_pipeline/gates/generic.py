"""Generic gate evaluators and the pieces the profile-specific gates share.

Every check parses what it judges: JSON through the payload models, markdown through a
heading parser that knows fenced code blocks. A field or heading name that merely
appears somewhere in the text never counts.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from wf_pipeline.errors import GateError, MetadataError
from wf_pipeline.gates.registry import Evaluator, GateSpecLike, register
from wf_pipeline.metadata.payloads import (
    EVIDENCE_MAP_HEADINGS,
    README_SECTIONS,
    ReadmeStruct,
    parse_json_output,
)

DEFAULT_MAX_DRIFT = 0.15
README_STRUCT_REF = "readme_struct"

ModelT = TypeVar("ModelT", bound=BaseModel)

# --- reasons ------------------------------------------------------------------------

# Reason parts come from model output (claim ids, JSON keys); keeping them to a short
# identifier alphabet stops a reason from carrying payload text into records and logs.
_UNSAFE_REASON_CHARS = re.compile(r"[^\w.\-<>]")
_MAX_REASON_PART = 64


def reason(code: str, *parts: object) -> str:
    """``CODE`` or ``CODE:part[:part]`` with every part reduced to identifier characters."""
    safe = [_UNSAFE_REASON_CHARS.sub("_", str(part))[:_MAX_REASON_PART] for part in parts]
    return ":".join([code, *safe])


def builtin_gate(gate_type: str) -> Callable[[Evaluator], Evaluator]:
    """Register an evaluator whose reasons come back sorted and without repeats."""

    def decorator(fn: Evaluator) -> Evaluator:
        @functools.wraps(fn)
        def evaluator(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
            return sorted(set(fn(output_text, inputs, spec)))

        return register(gate_type)(evaluator)

    return decorator


# --- rules --------------------------------------------------------------------------


def _rules(spec: GateSpecLike) -> Mapping[str, Any]:
    return spec.rules or {}


def _rules_error(spec: GateSpecLike, rule: str, expected: str) -> GateError:
    return GateError(
        "GATE_RULES_INVALID",
        f"gate {spec.gate_id!r} rule {rule!r} must be {expected}",
        gate_id=spec.gate_id,
        rule=rule,
    )


def max_drift_rule(spec: GateSpecLike) -> float:
    value = _rules(spec).get("max_drift", DEFAULT_MAX_DRIFT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _rules_error(spec, "max_drift", "a number between 0 and 1")
    return float(value)


# --- JSON output and inputs -----------------------------------------------------------


def _output_error_reasons(error: MetadataError) -> list[str]:
    if error.code == "OUTPUT_SCHEMA_VIOLATION":
        return [reason(error.code, field) for field in error.details.get("fields", ["<root>"])]
    return [reason(error.code)]


def _load_json_object(output_text: str) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        raw = json.loads(output_text)
    except (json.JSONDecodeError, TypeError):
        return None, [reason("OUTPUT_NOT_JSON")]
    if not isinstance(raw, dict):
        return None, [reason("OUTPUT_NOT_JSON")]
    return raw, []


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict):
        return not value
    return False


def required_field_reasons(document: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """FIELD_MISSING / FIELD_EMPTY for every required top-level field of a JSON object."""
    reasons = []
    for field in fields:
        if field not in document:
            reasons.append(reason("FIELD_MISSING", field))
        elif _is_empty(document[field]):
            reasons.append(reason("FIELD_EMPTY", field))
    return reasons


def parse_output(
    output_text: str, model: type[ModelT], spec: GateSpecLike
) -> tuple[ModelT | None, list[str]]:
    """The output parsed strictly as ``model`` (or None) plus the reasons it falls short.

    ``spec.required_fields`` applies to every JSON gate with the same meaning: present
    and non-empty in the output object.
    """
    try:
        parsed = parse_json_output(output_text, model)
    except MetadataError as error:
        return None, _output_error_reasons(error)
    return parsed, required_field_reasons(json.loads(output_text), spec.required_fields or ())


def parse_input(inputs: Mapping[str, str], ref: str, model: type[ModelT]) -> tuple[ModelT | None, list[str]]:
    """A required input parsed as ``model`` (or None) plus GATE_INPUT_* reasons."""
    text = inputs.get(ref)
    if text is None:
        return None, [reason("GATE_INPUT_MISSING", ref)]
    if not isinstance(text, str):
        return None, [reason("GATE_INPUT_INVALID", ref)]
    try:
        return parse_json_output(text, model), []
    except MetadataError:
        return None, [reason("GATE_INPUT_INVALID", ref)]


# --- markdown -----------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    line: int  # zero-based line index in the document


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*$")
_ATX_HEADING = re.compile(r"^ {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t]*$")
_CLOSING_MARKS = re.compile(r"(?:^|[ \t]+)#+$")


def markdown_lines(text: str) -> list[str]:
    return _LINE_BREAK.split(text)


def parse_headings(text: str) -> list[Heading]:
    """ATX headings (``#`` to ``######``) outside fenced code blocks, CommonMark style.

    Setext headings are not recognised: the rendered READMEs use ATX headings only.
    """
    headings: list[Heading] = []
    open_fence: str | None = None
    for index, line in enumerate(markdown_lines(text)):
        if open_fence is not None:
            closing = _FENCE_CLOSE.match(line)
            if closing and closing["fence"][0] == open_fence[0] and len(closing["fence"]) >= len(open_fence):
                open_fence = None
            continue
        fence = _FENCE_OPEN.match(line)
        # A backtick fence's info string may not contain backticks (then it is inline code).
        if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
            open_fence = fence["fence"]
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            content = _CLOSING_MARKS.sub("", heading["text"] or "").strip()
            headings.append(Heading(level=len(heading["marks"]), text=content, line=index))
    return headings


def normalize_heading(text: str) -> str:
    """Comparison form of a heading: case-folded, single spaces, no trailing colon."""
    return " ".join(text.split()).rstrip(":").rstrip().casefold()


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", normalize_heading(text)).strip("_")


def section_reasons(headings: Sequence[Heading], required: Mapping[str, str], level: int | None) -> list[str]:
    """SECTION_MISSING:<key> for every ``key -> heading text`` without a matching heading.

    ``level`` None accepts a heading of any level.
    """
    present = {normalize_heading(h.text) for h in headings if level is None or h.level == level}
    return [
        reason("SECTION_MISSING", key)
        for key, text in required.items()
        if normalize_heading(text) not in present
    ]


_EVIDENCE_HEADINGS = {normalize_heading(text): _slug(text) for text in EVIDENCE_MAP_HEADINGS}


def evidence_heading_reasons(headings: Iterable[Heading]) -> list[str]:
    """EVIDENCE_HEADING_PRESENT:<slug> for any heading that would leak the evidence map."""
    return [
        reason("EVIDENCE_HEADING_PRESENT", _EVIDENCE_HEADINGS[normalize_heading(h.text)])
        for h in headings
        if normalize_heading(h.text) in _EVIDENCE_HEADINGS
    ]


# --- drift --------------------------------------------------------------------------


def word_tokens(text: str) -> Counter[str]:
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
    measured = drift(struct, final_text)
    if measured > max_drift:
        return [reason("DRIFT_ABOVE_THRESHOLD", f"{measured:.3f}>{max_drift:g}")]
    return []


# --- generic evaluators ---------------------------------------------------------------


@builtin_gate("schema_required_fields")
def schema_required_fields(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The output is one JSON object and each of ``spec.required_fields`` is present and non-empty."""
    document, reasons = _load_json_object(output_text)
    if document is None:
        return reasons
    return required_field_reasons(document, spec.required_fields or ())


def _required_section_headings(spec: GateSpecLike) -> dict[str, str]:
    # Entries are README section keys ("api_surface") or literal heading texts ("Install").
    sections = _rules(spec).get("sections")
    if (
        not isinstance(sections, list | tuple)
        or not sections
        or not all(isinstance(entry, str) and entry.strip() for entry in sections)
    ):
        raise _rules_error(spec, "sections", "a non-empty list of section keys or heading texts")
    return {
        (entry if entry in README_SECTIONS else _slug(entry)): README_SECTIONS.get(entry, entry)
        for entry in sections
    }


def _heading_level_rule(spec: GateSpecLike) -> int | None:
    level = _rules(spec).get("level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 6):
        raise _rules_error(spec, "level", "an integer from 1 to 6")
    return level


@builtin_gate("required_sections")
def required_sections(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The markdown output has a heading for each of ``rules.sections`` (any level unless ``rules.level``)."""
    required = _required_section_headings(spec)
    return section_reasons(parse_headings(output_text), required, _heading_level_rule(spec))


@builtin_gate("no_semantic_drift")
def no_semantic_drift(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The markdown output keeps the ``readme_struct`` input's words (``rules.max_drift``)."""
    max_drift = max_drift_rule(spec)
    struct, reasons = parse_input(inputs, README_STRUCT_REF, ReadmeStruct)
    if struct is None:
        return reasons
    return drift_reasons(struct, output_text, max_drift)
