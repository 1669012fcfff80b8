"""Parallel segments: ``turns`` gains ``segment``, the segment a turn attempt ran in.

Turns of one thread with the same segment ran concurrently
(`wf_pipeline.profiles.segments`). The column is nullable: rows recorded before this
revision keep NULL, read as "not recorded".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0015_segments"
down_revision = "0014_activations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable integer column ``turns.segment``."""
    n = names()
    op.add_column(n.table("turns"), sa.Column("segment", sa.BigInteger(), nullable=True), schema=n.schema)


def downgrade() -> None:
    """Drop ``turns.segment`` (SQLite 3.35 or newer: ``ALTER TABLE ... DROP COLUMN``)."""
    n = names()
    op.drop_column(n.table("turns"), "segment", schema=n.schema)
