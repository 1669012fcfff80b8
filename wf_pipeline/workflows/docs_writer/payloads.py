"""Output schemas of the docs writer's four turns, and the README's section vocabulary.

The plug-in registers these schemas by output type (see ``plugin``); providers,
gates and the offline turns parse every output through them, strictly.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from wf_pipeline.metadata.payloads import StrictPayload

ClaimKind = Literal["module", "class", "function", "export", "script", "heading", "child", "file"]


class Claim(StrictPayload):
    """One statement about the target and the evidence that backs it.

    ``evidence_path`` names a file or child directory of the context; at least one of
    ``evidence_symbol`` and ``evidence_quote`` is set (pydantic validation error
    otherwise). ``kind`` says which extractor made it (None for model-written claims).
    """

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


class EvidenceMap(StrictPayload):
    """Output of ``evidence_gather``: the claims, in the order they were found.

    ``undescribed_paths`` (optional) lists files or child directories of the context whose
    claims were left out so the map fits ``max_output_bytes``; the README's caveats name
    them.
    """

    claims: tuple[Claim, ...]
    undescribed_paths: tuple[str, ...] | None = None


class VerificationReport(StrictPayload):
    """Output of ``verification``: verified and rejected claim ids, and a reason per rejection."""

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


class ReadmeStruct(StrictPayload):
    """Output of ``readme_struct``: a title and the body of each non-empty README section."""

    title: Annotated[str, Field(min_length=1)]
    scope: str | None = None
    purpose: str | None = None
    api_surface: str | None = None
    behavior_notes: str | None = None
    usage: str | None = None
    caveats: str | None = None
    related_components: str | None = None

    def sections(self) -> dict[str, str]:
        """Non-empty sections in README order: section key -> body."""
        return {
            key: value
            for key in README_SECTIONS
            if (value := getattr(self, key)) is not None and value.strip()
        }


# Output type -> schema, registered by the plug-in.
OUTPUT_MODELS: dict[str, type[StrictPayload]] = {
    "evidence_map": EvidenceMap,
    "verification_report": VerificationReport,
    "readme_struct": ReadmeStruct,
}
