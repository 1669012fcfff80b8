"""The offline provider: deterministic, model-free docs-writer output.

It ignores the prompt and derives each turn's output from the turn's structured
inputs alone: claims from the context's source text, a verification that re-checks
them, a README structure from the verified ones, and that structure's canonical
markdown. Same inputs, same bytes out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from wf_pipeline.errors import MetadataError, ProviderError
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import (
    Claim,
    ContextPayload,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
    parse_json_output,
)
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider
from wf_pipeline.providers.extract import Finding, child_findings, file_findings, vocabulary_of
from wf_pipeline.providers.readme import build_readme_struct, render_readme
from wf_pipeline.providers.verify import verify_evidence_map

PROVIDER_TYPE = "offline"
MODEL = "offline-v1"

_Model = TypeVar("_Model", bound=BaseModel)


def _json_text(model: BaseModel) -> str:
    return canonical_json(model.model_dump(mode="json", by_alias=True, exclude_none=True)).decode()


def _raw_input(request: ProviderRequest, ref: str) -> str:
    try:
        return request.inputs[ref]
    except KeyError:
        raise ProviderError(
            "PROVIDER_INPUT_MISSING",
            f"turn {request.turn_id} of thread {request.thread_id} needs input {ref!r}",
            turn_id=request.turn_id,
            input_ref=ref,
        ) from None


def _parsed_input(request: ProviderRequest, ref: str, model: type[_Model]) -> _Model:
    try:
        return parse_json_output(_raw_input(request, ref), model)
    except MetadataError as exc:
        raise ProviderError(
            "PROVIDER_INPUT_INVALID",
            f"input {ref!r} of turn {request.turn_id} is not a valid {model.__name__} ({exc.code})",
            turn_id=request.turn_id,
            input_ref=ref,
            cause=exc.code,
        ) from None


def _context(request: ProviderRequest) -> ContextPayload:
    return _parsed_input(request, "context", ContextPayload)


def build_evidence_map(context: ContextPayload) -> EvidenceMap:
    """Claims for every readable file (by path, then position in the file), then every child README."""
    vocabulary = vocabulary_of(context.files, (child.name for child in context.children))
    findings: list[Finding] = []
    for file in sorted(context.files, key=lambda f: f.path):
        findings.extend(file_findings(file, vocabulary))
    for child in sorted(context.children, key=lambda c: c.path):
        findings.extend(child_findings(child))
    claims = tuple(
        Claim(
            claim_id=f"c{number:03d}",
            statement=finding.statement,
            evidence_path=finding.path,
            evidence_symbol=finding.symbol,
            evidence_quote=finding.quote,
            kind=finding.kind,
        )
        for number, finding in enumerate(findings, start=1)
    )
    return EvidenceMap(claims=claims)


def _evidence_map_turn(request: ProviderRequest) -> str:
    return _json_text(build_evidence_map(_context(request)))


def _verification_turn(request: ProviderRequest) -> str:
    evidence_map = _parsed_input(request, "evidence_map", EvidenceMap)
    return _json_text(verify_evidence_map(evidence_map, _context(request)))


def _readme_struct_turn(request: ProviderRequest) -> str:
    evidence_map = _parsed_input(request, "evidence_map", EvidenceMap)
    report = _parsed_input(request, "verification_report", VerificationReport)
    context = _context(request) if "context" in request.inputs else None
    struct = build_readme_struct(evidence_map, report, context)
    if struct is None:
        # Only the context names the scanned root; claims alone cannot title its README.
        raise ProviderError(
            "PROVIDER_INPUT_MISSING",
            f"turn {request.turn_id} cannot derive the README title without input 'context'",
            turn_id=request.turn_id,
            input_ref="context",
        )
    return _json_text(struct)


def _readme_final_turn(request: ProviderRequest) -> str:
    return render_readme(_parsed_input(request, "readme_struct", ReadmeStruct))


_TURNS: dict[str, Callable[[ProviderRequest], str]] = {
    "evidence_map": _evidence_map_turn,
    "verification_report": _verification_turn,
    "readme_struct": _readme_struct_turn,
    "readme_final": _readme_final_turn,
}


class OfflineProvider:
    provider_type = PROVIDER_TYPE
    model = MODEL

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            produce = _TURNS[request.output_type]
        except KeyError:
            raise ProviderError(
                "PROVIDER_UNSUPPORTED_OUTPUT",
                f"offline provider cannot produce output type {request.output_type!r} (turn {request.turn_id})",
                output_type=request.output_type,
                supported=sorted(_TURNS),
            ) from None
        return ProviderResponse(text=produce(request), provider_type=self.provider_type, model=self.model)


@register_provider(PROVIDER_TYPE)
def offline_provider(options: Mapping[str, Any], env: Mapping[str, str]) -> OfflineProvider:
    return OfflineProvider()
