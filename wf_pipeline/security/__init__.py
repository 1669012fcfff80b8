"""Governance of prompt and context payloads: identities, signed grants, privileged reads,
the audit chain, redaction of secret-shaped values and the filter every log sink passes.
"""
