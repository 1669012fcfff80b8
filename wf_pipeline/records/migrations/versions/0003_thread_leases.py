"""Thread leases: which process runs a thread's turns now, and until when.

One row per leased thread (``thread_id`` primary key), the holder's id and the expiry in
Unix epoch ms. No reference to the threads table: a lease is coordination between
processes, taken and dropped around each turn, and never part of a thread's history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0003_thread_leases"
down_revision = "0002_thread_errors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``<prefix>thread_leases`` (thread_id, holder, expires_at_ms)."""
    n = names()
    full = n.table("thread_leases")
    op.create_table(
        full,
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", name=f"{full}_pk"),
        schema=n.schema,
    )


def downgrade() -> None:
    """Drop the leases table."""
    n = names()
    op.drop_table(n.table("thread_leases"), schema=n.schema)
