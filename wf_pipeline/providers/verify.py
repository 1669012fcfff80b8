"""Re-check an evidence map against the context it claims to cite.

A claim is verified only when its cited path is readable in the target context, its
quote occurs verbatim there, its symbol occurs as a whole identifier there and the
statement names that symbol. Everything else is rejected with a reason code.
"""

from __future__ import annotations

import re
from collections import Counter

from wf_pipeline.metadata.payloads import Claim, ContextPayload, EvidenceMap, VerificationReport

EVIDENCE_PATH_MISSING = "EVIDENCE_PATH_MISSING"
EVIDENCE_OMITTED_FILE = "EVIDENCE_OMITTED_FILE"
EVIDENCE_NOT_FOUND = "EVIDENCE_NOT_FOUND"
EVIDENCE_STATEMENT_UNRELATED = "EVIDENCE_STATEMENT_UNRELATED"
CLAIM_DUPLICATE_ID = "CLAIM_DUPLICATE_ID"

_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


def symbol_occurs(symbol: str, text: str) -> bool:
    """Identifiers must occur whole (``load`` is not found in ``download``); other symbols as substrings."""
    if _IDENTIFIER.fullmatch(symbol):
        return re.search(rf"(?<![\w$]){re.escape(symbol)}(?![\w$])", text) is not None
    return symbol in text


def rejection_reason(claim: Claim, context: ContextPayload) -> str | None:
    """The reason code that rejects ``claim``, or None when its evidence holds."""
    file = context.file(claim.evidence_path)
    if file is not None and file.text is None:
        return EVIDENCE_OMITTED_FILE
    text = context.evidence_text(claim.evidence_path)
    if text is None:
        # An unknown path, or a child directory without a README to check against.
        known = file is not None or context.child(claim.evidence_path) is not None
        return EVIDENCE_NOT_FOUND if known else EVIDENCE_PATH_MISSING
    if claim.evidence_quote and claim.evidence_quote not in text:
        return EVIDENCE_NOT_FOUND
    if claim.evidence_symbol:
        if not symbol_occurs(claim.evidence_symbol, text):
            return EVIDENCE_NOT_FOUND
        if claim.evidence_symbol.lower() not in claim.statement.lower():
            return EVIDENCE_STATEMENT_UNRELATED
    return None


def verify_evidence_map(evidence_map: EvidenceMap, context: ContextPayload) -> VerificationReport:
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
