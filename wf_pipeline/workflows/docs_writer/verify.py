"""Re-check an evidence map against the context it claims to cite (the offline verification).

A claim is verified when its evidence holds in the target (the rule lives in
``evidence``) and, when it gives a symbol, its statement names that symbol.
Everything else is rejected with a reason code.
"""

from __future__ import annotations

from collections import Counter

from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.workflows.docs_writer.evidence import claim_evidence
from wf_pipeline.workflows.docs_writer.payloads import Claim, EvidenceMap, VerificationReport

EVIDENCE_PATH_MISSING = "EVIDENCE_PATH_MISSING"
EVIDENCE_OMITTED_FILE = "EVIDENCE_OMITTED_FILE"
EVIDENCE_NOT_FOUND = "EVIDENCE_NOT_FOUND"
EVIDENCE_STATEMENT_UNRELATED = "EVIDENCE_STATEMENT_UNRELATED"
CLAIM_DUPLICATE_ID = "CLAIM_DUPLICATE_ID"


def rejection_reason(claim: Claim, context: ContextPayload) -> str | None:
    """The reason code that rejects ``claim``, or None when it is verified.

    EVIDENCE_OMITTED_FILE, EVIDENCE_PATH_MISSING, EVIDENCE_NOT_FOUND (quote or symbol
    not in the cited text, or a child without a head frame), or
    EVIDENCE_STATEMENT_UNRELATED (the statement does not name the symbol, case-insensitive).
    """
    evidence = claim_evidence(claim, context)
    if evidence.path == "omitted":
        return EVIDENCE_OMITTED_FILE
    if evidence.path == "missing":
        return EVIDENCE_PATH_MISSING
    if evidence.quote_found is False or evidence.symbol_found is False:
        return EVIDENCE_NOT_FOUND
    if claim.evidence_symbol and claim.evidence_symbol.lower() not in claim.statement.lower():
        return EVIDENCE_STATEMENT_UNRELATED
    return None


def verify_evidence_map(evidence_map: EvidenceMap, context: ContextPayload) -> VerificationReport:
    """Verify every claim; a claim id used twice is rejected (CLAIM_DUPLICATE_ID) for each use.

    Returns the report with verified ids in claim order and one reason per rejected id.
    """
    id_counts = Counter(claim.claim_id for claim in evidence_map.claims)
    verified: list[str] = []
    reasons: dict[str, str] = {}
    for claim in evidence_map.claims:
        if id_counts[claim.claim_id] > 1:
            # An ambiguous id cannot be verified: it would name two different claims.
            reasons.setdefault(claim.claim_id, CLAIM_DUPLICATE_ID)
            continue
        reason = rejection_reason(claim, context)
        if reason is None:
            verified.append(claim.claim_id)
        else:
            reasons[claim.claim_id] = reason
    return VerificationReport(
        verified_claims=tuple(verified), rejected_claims=tuple(reasons), reasons=reasons
    )
