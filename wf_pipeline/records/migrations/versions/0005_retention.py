"""Retention: tombstones of deleted artifacts and legal holds.

``tombstones`` has one row per artifact retention or compaction deleted from the CAS
(``artifact_id`` primary key): its class, workflow, the policy and window that let it go,
why, its size in bytes and when (Unix epoch ms). ``holds`` has one row per legal hold on
a thread or a workflow; a hold is active while ``released_at_ms`` is NULL. Neither
references the threads table: both outlive what they describe.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0005_retention"
down_revision = "0004_tree_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``<prefix>tombstones`` (with a workflow/class index) and ``<prefix>holds``."""
    n = names()
    tombstones = n.table("tombstones")
    op.create_table(
        tombstones,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("artifact_id", sa.Text(), nullable=False),
        sa.Column("artifact_class", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("window_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", name=f"{tombstones}_pk"),
        schema=n.schema,
    )
    op.create_index(
        f"{tombstones}_workflow_id_artifact_class_ix",
        tombstones,
        ["workflow_id", "artifact_class"],
        schema=n.schema,
    )
    holds = n.table("holds")
    op.create_table(
        holds,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", sa.Text(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("released_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("hold_id", name=f"{holds}_pk"),
        schema=n.schema,
    )


def downgrade() -> None:
    """Drop both tables."""
    n = names()
    op.drop_table(n.table("holds"), schema=n.schema)
    op.drop_index(
        f"{n.table('tombstones')}_workflow_id_artifact_class_ix", n.table("tombstones"), schema=n.schema
    )
    op.drop_table(n.table("tombstones"), schema=n.schema)
