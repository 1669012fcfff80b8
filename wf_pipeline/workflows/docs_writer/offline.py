"""The docs writer's offline turns: deterministic, model-free output for each output type.

Claims come from the context's source text, the verification re-checks them with the
evidence rule, the README structure is built from the verified ones, and the final
markdown is that structure's canonical rendering. The plug-in registers each turn with
the offline provider under its output type.

Each turn keeps its output within the request's ``max_output_bytes`` (the profile's
``artifact_policy.max_output_bytes``): the evidence map groups its claims, then keeps one
per path, then leaves whole paths out and names them;
the README structure lists fewer omitted files, then uses fewer verified claims. The
verification report lists ids only, so it stays far smaller than the map it checks.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from pydantic import BaseModel

from wf_pipeline.errors import PROVIDER_INPUT_MISSING, ProviderError
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.providers.base import ProviderRequest
from wf_pipeline.providers.offline import OfflineTurn, json_text, parsed_input
from wf_pipeline.tree.context import file_priority
from wf_pipeline.workflows.docs_writer.evidence import evidence_view
from wf_pipeline.workflows.docs_writer.extract import (
    Finding,
    child_findings,
    code,
    file_findings,
    sibling_reexports,
    vocabulary_of,
)
from wf_pipeline.workflows.docs_writer.payloads import Claim, EvidenceMap, ReadmeStruct, VerificationReport
from wf_pipeline.workflows.docs_writer.render import MAX_LISTED_OMISSIONS, build_readme_struct, render_readme
from wf_pipeline.workflows.docs_writer.verify import verify_evidence_map


def _context(request: ProviderRequest) -> ContextPayload:
    # Read as evidence reads it: a context the profile left unmasked gives no quote with a secret.
    return evidence_view(parsed_input(request, CONTEXT_REF, ContextPayload))


# Bytes kept free under max_output_bytes for the final README, whose Markdown adds
# headings the struct's JSON does not have (7 section headings and a title line).
MARKDOWN_MARGIN_BYTES = 512
_API_KINDS = ("function", "class", "export")


def _findings(context: ContextPayload) -> list[Finding]:
    vocabulary = vocabulary_of(context.files, (child.name for child in context.children))
    # Names the package's __init__ re-exports are public in the module that defines them.
    reexported = sibling_reexports(context.files)
    findings: list[Finding] = []
    for file in sorted(context.files, key=lambda f: f.path):
        findings.extend(file_findings(file, vocabulary, reexported.get(file.name, ())))
    for child in sorted(context.children, key=lambda c: c.path):
        findings.extend(child_findings(child))
    return findings


def _evidence_map(findings: list[Finding], undescribed: list[str] | None = None) -> EvidenceMap:
    return EvidenceMap(
        claims=tuple(
            Claim(
                claim_id=f"c{number:03d}",
                statement=finding.statement,
                evidence_path=finding.path,
                evidence_symbol=finding.symbol,
                evidence_quote=finding.quote,
                kind=finding.kind,
            )
            for number, finding in enumerate(findings, start=1)
        ),
        undescribed_paths=tuple(sorted(undescribed)) if undescribed else None,
    )


def group_findings(findings: list[Finding]) -> list[Finding]:
    """One API claim per file instead of one per function, class or export.

    The grouped claim names every symbol in code spans and cites the first one, so its
    evidence still holds; the file's other findings (module, script, headings) stay.
    """
    grouped: list[Finding] = []
    api_by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.kind in _API_KINDS and finding.symbol:
            if finding.path not in api_by_path:
                api_by_path[finding.path] = []
                grouped.append(finding)  # placeholder, replaced below
            api_by_path[finding.path].append(finding)
        else:
            grouped.append(finding)
    result = []
    for finding in grouped:
        members = api_by_path.get(finding.path) if finding.kind in _API_KINDS else None
        if members is None or finding is not members[0]:
            result.append(finding)
            continue
        names = ", ".join(code(member.symbol or "") for member in members)
        result.append(Finding(members[0].kind, finding.path, names, symbol=members[0].symbol))
    return result


def first_finding_per_path(findings: list[Finding]) -> list[Finding]:
    """Each path's first finding only (a module's docstring claim, a document's title)."""
    seen: set[str] = set()
    kept = []
    for finding in findings:
        if finding.path not in seen:
            seen.add(finding.path)
            kept.append(finding)
    return kept


def _ranked_paths(findings: list[Finding], context: ContextPayload) -> list[str]:
    # What a shortened map keeps first: subdirectories, then entry points and documentation
    # (`wf_pipeline.tree.context.file_priority`), then files by path.
    children = {child.path for child in context.children}
    paths = {finding.path for finding in findings}

    def rank(path: str) -> tuple[int, int, str]:
        if path in children:
            return (0, 0, path)
        return (1, file_priority(posixpath.basename(path)), path)

    return sorted(paths, key=rank)


def _size(model: BaseModel) -> int:
    return len(json_text(model).encode("utf-8"))


def _longest_prefix(count: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [0, count] with fits(k), for a fits that holds up to some k and not beyond."""
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def build_evidence_map(context: ContextPayload, max_bytes: int | None = None) -> EvidenceMap:
    """Claims for every readable file (by path, then position in the file), then every child README.

    Claim ids are ``c001``, ``c002``... in that order. Over ``max_bytes`` (the profile's
    ``max_output_bytes``), each file's API claims are grouped into one (`group_findings`);
    if that is still over, each path keeps only its first claim (`first_finding_per_path`);
    if that is still over, the map keeps the claims of as many whole paths as fit, ranked
    subdirectories first, then entry points and documentation, then the other files by
    path, and lists the others in ``undescribed_paths``.
    """
    findings = _findings(context)
    evidence_map = _evidence_map(findings)
    if max_bytes is None or _size(evidence_map) <= max_bytes:
        return evidence_map
    findings = group_findings(findings)
    evidence_map = _evidence_map(findings)
    if _size(evidence_map) <= max_bytes:
        return evidence_map
    findings = first_finding_per_path(findings)
    evidence_map = _evidence_map(findings)
    if _size(evidence_map) <= max_bytes:
        return evidence_map
    ranked = _ranked_paths(findings, context)

    def shortened(k: int) -> EvidenceMap:
        kept = set(ranked[:k])
        return _evidence_map([f for f in findings if f.path in kept], ranked[k:])

    return shortened(_longest_prefix(len(ranked), lambda k: _size(shortened(k)) <= max_bytes))


def fitted_readme_struct(
    evidence_map: EvidenceMap,
    report: VerificationReport,
    context: ContextPayload | None,
    max_bytes: int | None = None,
) -> ReadmeStruct | None:
    """`build_readme_struct`, kept within ``max_bytes`` less `MARKDOWN_MARGIN_BYTES`.

    Over the limit, the caveats list at most `MAX_LISTED_OMISSIONS` entries by name, and
    the struct is built from the longest run of verified claims that fits; the others are
    left out of the evidence map handed on (so their text is not excluded) and their
    paths count as undescribed.
    """
    struct = build_readme_struct(evidence_map, report, context)
    if struct is None or max_bytes is None or _size(struct) <= max_bytes - MARKDOWN_MARGIN_BYTES:
        return struct
    limit = max_bytes - MARKDOWN_MARGIN_BYTES
    verified = [claim_id for claim_id in report.verified_claims]

    def built(k: int) -> ReadmeStruct | None:
        dropped = set(verified[k:])
        claims = tuple(c for c in evidence_map.claims if c.claim_id not in dropped)
        kept_ids = set(verified[:k])
        described = {c.evidence_path for c in claims if c.claim_id in kept_ids}
        left_out = {c.evidence_path for c in evidence_map.claims if c.claim_id in dropped} - described
        undescribed = sorted(left_out | set(evidence_map.undescribed_paths or ()))
        kept_map = EvidenceMap(claims=claims, undescribed_paths=tuple(undescribed) or None)
        kept_report = report.model_copy(update={"verified_claims": tuple(verified[:k])})
        return build_readme_struct(kept_map, kept_report, context, max_listed_omissions=MAX_LISTED_OMISSIONS)

    def fits(k: int) -> bool:
        candidate = built(k)
        return candidate is not None and _size(candidate) <= limit

    return built(_longest_prefix(len(verified), fits))


def evidence_map_turn(request: ProviderRequest) -> str:
    """``evidence_map`` JSON from the ``context`` input. Raises ProviderError PROVIDER_INPUT_*."""
    return json_text(build_evidence_map(_context(request), request.max_output_bytes))


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
    struct = fitted_readme_struct(evidence_map, report, context, request.max_output_bytes)
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
