"""Admin approvals: an admin registered after the first carries the approving admin's signature.

``identities`` gains two nullable columns: ``approved_by`` (text, the approving admin's
name) and ``approval`` (binary, that admin's Ed25519 signature over the approval message
of the new identity's name and public key, `wf_pipeline.security.identities`). Identities
registered before this revision keep both NULL: the store's first admin needs no approval;
any later admin without one is no admin until re-registered with an approval.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0011_identity_approval"
down_revision = "0010_audit_seal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``approved_by`` (nullable text) and ``approval`` (nullable binary) to ``<prefix>identities``."""
    n = names()
    identities = n.table("identities")
    op.add_column(identities, sa.Column("approved_by", sa.Text(), nullable=True), schema=n.schema)
    op.add_column(identities, sa.Column("approval", sa.LargeBinary(), nullable=True), schema=n.schema)


def downgrade() -> None:
    """Drop both columns (SQLite 3.35 or newer: ``ALTER TABLE ... DROP COLUMN``)."""
    n = names()
    identities = n.table("identities")
    for column in ("approval", "approved_by"):
        op.drop_column(identities, column, schema=n.schema)
