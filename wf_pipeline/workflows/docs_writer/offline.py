"""The docs writer's offline turns: deterministic, model-free output for each output type.

Claims come from the context's source text, the verification re-checks them with the
evidence rule, the README structure is built from the verified ones, and the final
markdown is that structure's canonical rendering. The plug-in registers each turn with
the offline provider under its output type.
"""

from __future__ import annotations

from wf_pipeline.errors import PROVIDER_INPUT_MISSING, ProviderError
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.providers.base import ProviderRequest
from wf_pipeline.providers.offline import OfflineTurn, json_text, parsed_input
from wf_pipeline.workflows.docs_writer.extract import (
    Finding,
    child_findings,
    file_findings,
    sibling_reexports,
    vocabulary_of,
)
from wf_pipeline.workflows.docs_writer.payloads import Claim, EvidenceMap, ReadmeStruct, VerificationReport
from wf_pipeline.workflows.docs_writer.render import build_readme_struct, render_readme
from wf_pipeline.workflows.docs_writer.verify import verify_evidence_map


def _context(request: ProviderRequest) -> ContextPayload:
    return parsed_input(request, CONTEXT_REF, ContextPayload)


def build_evidence_map(context: ContextPayload) -> EvidenceMap:
    """Claims for every readable file (by path, then position in the file), then every child README.

    Claim ids are ``c001``, ``c002``... in that order.
    """
    vocabulary = vocabulary_of(context.files, (child.name for child in context.children))
    # Names the package's __init__ re-exports are public in the module that defines them.
    reexported = sibling_reexports(context.files)
    findings: list[Finding] = []
    for file in sorted(context.files, key=lambda f: f.path):
        findings.extend(file_findings(file, vocabulary, reexported.get(file.name, ())))
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


def evidence_map_turn(request: ProviderRequest) -> str:
    """``evidence_map`` JSON from the ``context`` input. Raises ProviderError PROVIDER_INPUT_*."""
    return json_text(build_evidence_map(_context(request)))


def verification_turn(request: ProviderRequest) -> str:
    """``verification_report`` JSON from ``evidence_map`` and ``context``. Raises ProviderError PROVIDER_INPUT_*."""
    evidence_map = parsed_input(request, "evidence_map", EvidenceMap)
    return json_text(verify_evidence_map(evidence_map, _context(request)))


def readme_struct_turn(request: ProviderRequest) -> str:
    """``readme_struct`` JSON from ``evidence_map``, ``verification_report`` and (optional) ``context``.

    Raises ProviderError PROVIDER_INPUT_* ; PROVIDER_INPUT_MISSING also when, without a
    context, the claims cannot name the directory (the scanned root).
    """
    evidence_map = parsed_input(request, "evidence_map", EvidenceMap)
    report = parsed_input(request, "verification_report", VerificationReport)
    context = _context(request) if CONTEXT_REF in request.inputs else None
    struct = build_readme_struct(evidence_map, report, context)
    if struct is None:
        # Only the context names the scanned root; claims alone cannot title its README.
        raise ProviderError(
            PROVIDER_INPUT_MISSING,
            f"turn {request.turn_id} cannot derive the README title without input 'context'",
            turn_id=request.turn_id,
            input_ref=CONTEXT_REF,
        )
    return json_text(struct)


def readme_final_turn(request: ProviderRequest) -> str:
    """README.md markdown: the canonical rendering of the ``readme_struct`` input."""
    return render_readme(parsed_input(request, "readme_struct", ReadmeStruct))


# Output type -> offline turn, registered by the plug-in.
OFFLINE_TURNS: dict[str, OfflineTurn] = {
    "evidence_map": evidence_map_turn,
    "verification_report": verification_turn,
    "readme_struct": readme_struct_turn,
    "readme_final": readme_final_turn,
}
