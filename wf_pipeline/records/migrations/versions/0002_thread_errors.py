"""Thread errors: why a failed thread stopped (``error_code``, ``error_text``).

Both columns are nullable, so rows written before this revision read as threads with no
recorded error.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0002_thread_errors"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable TEXT columns ``error_code`` and ``error_text`` to the threads table."""
    n = names()
    # batch_alter_table: SQLite alters a table by copying it; PostgreSQL adds the columns in place.
    with op.batch_alter_table(n.table("threads"), schema=n.schema) as batch:
        batch.add_column(sa.Column("error_code", sa.Text(), nullable=True))
        batch.add_column(sa.Column("error_text", sa.Text(), nullable=True))
