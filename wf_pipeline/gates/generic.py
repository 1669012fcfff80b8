"""Generic gate evaluators and the pieces workflow-specific gates share.

Every check parses what it judges: JSON through the payload models, Markdown through
the one Markdown reader (``wf_pipeline.text.markdown``). A field or heading name that
merely appears somewhere in the text never counts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field, field_validator

from wf_pipeline.errors import (
    GATE_DUPLICATE_SECTION_KEY,
    OUTPUT_SCHEMA_VIOLATION,
    MetadataError,
)
from wf_pipeline.gates.findings import FindingTable
from wf_pipeline.gates.registry import Evaluator, GateSpecLike, register
from wf_pipeline.gates.rules import GateRules, resolved_rules
from wf_pipeline.metadata.canonical import parse_json
from wf_pipeline.metadata.payloads import parse_json_output
from wf_pipeline.registry import Registry
from wf_pipeline.text.markdown import Heading, read_markdown

__all__ = ["Heading"]

ModelT = TypeVar("ModelT", bound=BaseModel)

# --- reasons ------------------------------------------------------------------------

# Reason parts may come from model output (claim ids, JSON keys), and reasons go to the
# records, Dagster and the CLI, which carry ids, digests and positions only. A part is kept
# as written when every dotted segment has the shape of a field name (lowercase words), a
# short id (``c002``, ``claim_12``), an index or a placeholder (``<root>``), or when it is a
# figure (``0.412>0.3``); any other part is named by its digest (`reason_part`).
_KEPT_SEGMENT = re.compile(r"[a-z][a-z_]{0,31}|[A-Za-z]{1,8}[-_]?\d{1,6}|\d{1,6}|<[a-z]+>")
_FIGURE = re.compile(r"[\d.<>=]{1,32}")
# Hex digits of the digest that names a part: enough to tell parts apart, short of the length
# the secret detector takes for a key.
_PART_DIGEST_HEX = 12


def reason_part(part: object) -> str:
    """``part`` as a reason may carry it: itself when it is field- or id-shaped, else ``h-<12 hex>``.

    Args:
        part: a field path, an id, a figure, or a value a model wrote.

    Returns:
        ``str(part)`` when it is a figure or every ``.``-separated segment is a lowercase
        field name, a short id, an index or ``<placeholder>``; otherwise ``h-`` and the first
        12 hex digits of the SHA-256 of its UTF-8 bytes, so the same value always gives the
        same name and none of its text. Raises nothing.
    """
    text = str(part)
    if _FIGURE.fullmatch(text) or all(_KEPT_SEGMENT.fullmatch(segment) for segment in text.split(".")):
        return text
    return "h-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_PART_DIGEST_HEX]


def reason(code: str, *parts: object) -> str:
    """``CODE`` or ``CODE:part[:part]``, every part as `reason_part` keeps it (no payload text)."""
    return ":".join([code, *(reason_part(part) for part in parts)])


def sorted_reasons(fn: Evaluator) -> Evaluator:
    """``fn`` wrapped so that its reasons come back sorted and without repeats."""

    @functools.wraps(fn)
    def evaluator(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
        return sorted(set(fn(output_text, inputs, spec)))

    return evaluator


def builtin_gate(
    gate_type: str, *, rules: type[GateRules] = GateRules, findings: FindingTable | None = None
) -> Callable[[Evaluator], Evaluator]:
    """Register a generic evaluator under ``gate_type``, its reasons sorted and without repeats.

    ``rules`` and ``findings`` are the gate type's rules model and findings table
    (`wf_pipeline.gates.registry.register`). Raises GateError GATE_DUPLICATE_TYPE when
    ``gate_type`` is taken.
    """

    def decorator(fn: Evaluator) -> Evaluator:
        return register(gate_type, rules=rules, findings=findings)(sorted_reasons(fn))

    return decorator


# --- JSON output and inputs -----------------------------------------------------------


def _output_error_reasons(error: MetadataError) -> list[str]:
    if error.code == OUTPUT_SCHEMA_VIOLATION:
        return [reason(error.code, field) for field in error.details.get("fields", ["<root>"])]
    return [reason(error.code)]


def _load_json_object(output_text: str) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        raw = parse_json(output_text)
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
    return parsed, required_field_reasons(parse_json(output_text), spec.required_fields or ())


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


def parse_headings(text: str) -> list[Heading]:
    """The ``#`` (ATX) headings of a Markdown text, in document order, as the Markdown reader sees them.

    Headings inside code (fenced, however long the fence, or indented) are not headings.
    Setext headings are not counted: a section heading in an output is a ``#`` heading.
    """
    return read_markdown(text).atx_headings()


def normalize_heading(text: str) -> str:
    """Comparison form of a heading: case-folded, single spaces, no trailing colon."""
    return " ".join(text.split()).rstrip(":").rstrip().casefold()


def heading_slug(text: str) -> str:
    """A heading as an identifier for reasons: normalized, runs of non-word characters as ``_``."""
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


# --- generic evaluators ---------------------------------------------------------------


@builtin_gate("schema_required_fields")
def schema_required_fields(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The output is one JSON object and each of ``spec.required_fields`` is present and non-empty."""
    document, reasons = _load_json_object(output_text)
    if document is None:
        return reasons
    return required_field_reasons(document, spec.required_fields or ())


_SECTION_HEADINGS: Registry[str, str] = Registry(
    "section heading", key="section key", duplicate=GATE_DUPLICATE_SECTION_KEY
)


def register_section_headings(headings: Mapping[str, str]) -> None:
    """Let ``rules.sections`` of ``required_sections`` name sections by key (key -> heading text).

    A workflow registers its section vocabulary (e.g. ``api_surface`` -> ``API surface``).
    Registering a key again with the same heading is a no-op.

    Args:
        headings: section key -> heading text.

    Raises:
        GateError: ``GATE_DUPLICATE_SECTION_KEY`` when a key already names another
            heading; then none of ``headings`` is registered.
    """
    _SECTION_HEADINGS.register_many(headings)


class RequiredSectionsRules(GateRules):
    """Rules of ``required_sections`` (docs/profiles.md).

    Attributes:
        sections: required; a non-empty list of registered section keys (``api_surface``)
            or literal heading texts (``Install``), none blank.
        level: the heading level (1-6) a section's heading must have; default None (any).
    """

    sections: list[str] = Field(min_length=1)
    level: int | None = Field(default=None, ge=1, le=6)

    @field_validator("sections")
    @classmethod
    def _no_blank_entry(cls, value: list[str]) -> list[str]:
        if not all(entry.strip() for entry in value):
            raise ValueError("every section must be a non-blank key or heading text")
        return value


def _required_section_headings(spec: GateSpecLike) -> dict[str, str]:
    # Entries are registered section keys ("api_surface") or literal heading texts ("Install").
    sections = resolved_rules(RequiredSectionsRules, spec.gate_id, spec.rules).sections
    required: dict[str, str] = {}
    for entry in sections:
        registered = _SECTION_HEADINGS.find(entry)
        if registered is None:
            required[heading_slug(entry)] = entry
        else:
            required[entry] = registered
    return required


@builtin_gate("required_sections", rules=RequiredSectionsRules)
def required_sections(output_text: str, inputs: Mapping[str, str], spec: GateSpecLike) -> list[str]:
    """The markdown output has a heading for each of ``rules.sections`` (any level unless ``rules.level``)."""
    required = _required_section_headings(spec)
    level = resolved_rules(RequiredSectionsRules, spec.gate_id, spec.rules).level
    return section_reasons(parse_headings(output_text), required, level)
