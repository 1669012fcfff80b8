"""Audit seals: each audit event gets the HMAC of its event_hash under a key the store does not hold.

``audit_events`` gains two nullable text columns: ``seal`` (``hmac-sha256:<64 hex>``) and
``seal_key_id`` (the first 16 hex digits of the key's SHA-256). Events written before this
revision keep both NULL (`wf_pipeline.security.audit.verify_audit_chain` reports them as
unsealed). Adding columns leaves the append-only triggers of 0007_audit in place: on
PostgreSQL the row trigger (UPDATE, DELETE) and the statement trigger (TRUNCATE), on SQLite
the two row triggers; no existing row is rewritten (both columns default to NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0010_audit_seal"
down_revision = "0009_grants"
branch_labels = None
depends_on = None

_COLUMNS = ("seal", "seal_key_id")


def upgrade() -> None:
    """Add ``seal`` and ``seal_key_id`` (nullable text) to ``<prefix>audit_events``."""
    n = names()
    audit = n.table("audit_events")
    for column in _COLUMNS:
        op.add_column(audit, sa.Column(column, sa.Text(), nullable=True), schema=n.schema)


def downgrade() -> None:
    """Drop both columns (SQLite 3.35 or newer: ``ALTER TABLE ... DROP COLUMN``)."""
    n = names()
    audit = n.table("audit_events")
    for column in reversed(_COLUMNS):
        op.drop_column(audit, column, schema=n.schema)
