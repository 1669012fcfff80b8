"""Does a claim hold in this tree: the one evidence rule of the docs writer.

The offline verifier (``verify``) and the evidence gate (``gates``) both ask this
module and only map its answer to their own reason codes, so they cannot disagree.
The rules themselves (cited path, masked text, quote and symbol matching) are the
generic ones of `wf_pipeline.text.evidence`, shared with every workflow; this module
applies them to a docs-writer `Claim`.
"""

from __future__ import annotations

from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.text.evidence import (
    ClaimEvidence,
    PathStatus,
    cited_evidence,
    collapse_whitespace,
    evidence_view,
    quote_forms,
    quote_occurs,
    symbol_occurs,
)
from wf_pipeline.workflows.docs_writer.payloads import Claim

__all__ = [
    "ClaimEvidence",
    "PathStatus",
    "claim_evidence",
    "collapse_whitespace",
    "evidence_view",
    "quote_forms",
    "quote_occurs",
    "symbol_occurs",
]


def claim_evidence(claim: Claim, context: ContextPayload) -> ClaimEvidence:
    """Check ``claim``'s path, quote and symbol against the target's ``context`` (`cited_evidence`)."""
    return cited_evidence(context, claim.evidence_path, claim.evidence_quote, claim.evidence_symbol)
