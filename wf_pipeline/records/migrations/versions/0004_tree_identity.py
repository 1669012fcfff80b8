"""Tree identity: one row per registered tree (resolved root path, display name, output place).

Trees are identified by their resolved root path, not by their base name; the row also
records where `wf targets sync --out/--in-place` said the tree's outputs go, so every
launch path writes them to the same place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0004_tree_identity"
down_revision = "0003_thread_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``trees`` table keyed by ``root_id``."""
    n = names()
    full = n.table("trees")
    op.create_table(
        full,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("root_id", sa.Text(), nullable=False),
        sa.Column("root_path", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("tree_key", sa.Text(), nullable=False),
        sa.Column("out_dir", sa.Text(), nullable=True),
        sa.Column("in_place", sa.Boolean(), nullable=False),
        sa.Column("overwrite", sa.Boolean(), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("root_id", name=f"{full}_pk"),
        schema=n.schema,
    )


def downgrade() -> None:
    """Drop the ``trees`` table."""
    n = names()
    op.drop_table(n.table("trees"), schema=n.schema)
