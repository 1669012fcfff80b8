"""Branches: ``turns`` gains ``branch``, the decision of a turn's ``when:``.

The column holds JSON (``{"expression", "reads", "result"}``, ids and values only, never
payload text; `wf_pipeline.profiles.expressions.Decision`) for every turn that declares
``when:``: a turn its branch skipped is recorded ``skipped`` with the decision, a turn that
ran records the decision that let it run. It is nullable: unconditional turns, and rows
recorded before this revision, keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0013_branches"
down_revision = "0012_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable text column ``turns.branch``."""
    n = names()
    op.add_column(n.table("turns"), sa.Column("branch", sa.Text(), nullable=True), schema=n.schema)


def downgrade() -> None:
    """Drop ``turns.branch`` (SQLite 3.35 or newer: ``ALTER TABLE ... DROP COLUMN``)."""
    n = names()
    op.drop_column(n.table("turns"), "branch", schema=n.schema)
