"""Structured payloads that cross domain boundaries.

The context payload is what the runtime hands a provider and a gate for one target
directory; the docs-writer models are the strict shapes of that profile's outputs.
Providers produce them, gates parse and judge them, the runtime stores them. They are
defined once, here, and every other domain imports them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wf_pipeline.errors import MetadataError

CONTEXT_SCHEMA = "wf.context.v1"

OmittedReason = Literal["binary", "oversized", "unreadable"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContextFile(_Strict):
    """One file directly inside the target directory.

    ``path`` is POSIX and relative to the scanned root. ``text`` is None exactly when
    ``omitted`` says why (binary, oversized or unreadable files never enter prompts).
    """

    path: str
    name: str
    size: int
    language: str | None = None
    text: str | None = None
    omitted: OmittedReason | None = None

    @model_validator(mode="after")
    def _text_xor_omitted(self) -> ContextFile:
        if (self.text is None) == (self.omitted is None):
            raise ValueError("exactly one of text and omitted must be set")
        return self


class ContextChild(_Strict):
    """A child directory with the README generated for it earlier in the run (bottom-up)."""

    path: str
    name: str
    node_id: str
    readme: str | None = None


class ContextTarget(_Strict):
    path: str  # "." for the scanned root
    name: str
    node_id: str


class ContextPayload(_Strict):
    schema_id: Literal["wf.context.v1"] = Field(default=CONTEXT_SCHEMA, alias="schema")
    target: ContextTarget
    files: tuple[ContextFile, ...] = ()
    children: tuple[ContextChild, ...] = ()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def file(self, path: str) -> ContextFile | None:
        return next((f for f in self.files if f.path == path), None)

    def child(self, path: str) -> ContextChild | None:
        return next((c for c in self.children if c.path == path), None)

    def evidence_text(self, path: str) -> str | None:
        """Text a claim citing ``path`` can be checked against: a file's text or a child's README."""
        found = self.file(path)
        if found is not None:
            return found.text
        child = self.child(path)
        return child.readme if child is not None else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- docs_writer_thread_v1 outputs -------------------------------------------------

ClaimKind = Literal["module", "class", "function", "export", "script", "heading", "child", "file"]


class Claim(_Strict):
    claim_id: Annotated[str, Field(min_length=1)]
    statement: Annotated[str, Field(min_length=1)]
    evidence_path: Annotated[str, Field(min_length=1)]
    evidence_symbol: str | None = None
    evidence_quote: str | None = None
    kind: ClaimKind | None = None

    @model_validator(mode="after")
    def _symbol_or_quote(self) -> Claim:
        if not (self.evidence_symbol or self.evidence_quote):
            raise ValueError("a claim needs evidence_symbol or evidence_quote")
        return self


class EvidenceMap(_Strict):
    claims: tuple[Claim, ...]


class VerificationReport(_Strict):
    verified_claims: tuple[str, ...]
    rejected_claims: tuple[str, ...]
    # claim_id -> reason code (e.g. EVIDENCE_NOT_FOUND) for every rejected claim.
    reasons: dict[str, str] = Field(default_factory=dict)


# Section key -> heading in the final README, in the order they are written.
README_SECTIONS: dict[str, str] = {
    "scope": "Scope",
    "purpose": "Purpose",
    "api_surface": "API surface",
    "behavior_notes": "Behavior notes",
    "usage": "Usage",
    "caveats": "Caveats",
    "related_components": "Related components",
}
# Headings that would leak the evidence map into a README.
EVIDENCE_MAP_HEADINGS = ("evidence map", "evidence", "claims", "evidence_map")


class ReadmeStruct(_Strict):
    title: Annotated[str, Field(min_length=1)]
    scope: str | None = None
    purpose: str | None = None
    api_surface: str | None = None
    behavior_notes: str | None = None
    usage: str | None = None
    caveats: str | None = None
    related_components: str | None = None

    def sections(self) -> dict[str, str]:
        """Non-empty sections in README order."""
        return {
            key: value
            for key in README_SECTIONS
            if (value := getattr(self, key)) is not None and value.strip()
        }


OUTPUT_MODELS: dict[str, type[_Strict]] = {
    "evidence_map": EvidenceMap,
    "verification_report": VerificationReport,
    "readme_struct": ReadmeStruct,
}


def parse_json_output(text: str, model: type[_Strict]) -> Any:
    """Parse model output strictly: one JSON object that validates against ``model``.

    Raises MetadataError(OUTPUT_NOT_JSON | OUTPUT_SCHEMA_VIOLATION). Nothing is inferred
    from field names appearing in free text.
    """
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MetadataError(
            "OUTPUT_NOT_JSON", f"output is not a JSON document ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from None
    if not isinstance(raw, dict):
        raise MetadataError("OUTPUT_NOT_JSON", "output is not a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()})
        raise MetadataError(
            "OUTPUT_SCHEMA_VIOLATION", f"output does not match {model.__name__}", fields=fields
        ) from None
