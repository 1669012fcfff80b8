"""Metadata contracts: canonical bytes and digests, record schemas, the frame-metadata
write boundary with its key registry and budgets, and the structured payloads that
cross domain boundaries (context payloads and docs-writer outputs)."""
