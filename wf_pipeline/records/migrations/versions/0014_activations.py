"""Chained activations: which upstream threads started which run of an activated workflow.

``activations`` has one row per activation (``activation_id`` primary key, also the run
key of the requested Dagster run): the upstream and activated workflow ids, the
condition that held, the tree and the partition the activated workflow runs on, the
upstream thread ids it was judged on (canonical JSON text) and their digest, and when it
was recorded (ms). It does not reference the threads table: an activation outlives the
threads it was judged on. An index on (source_workflow_id, tree_root_id) serves a tree's
activations.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0014_activations"
down_revision = "0013_branches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``<prefix>activations`` and its (source_workflow_id, tree_root_id) index."""
    n = names()
    activations = n.table("activations")
    op.create_table(
        activations,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("activation_id", sa.Text(), nullable=False),
        sa.Column("source_workflow_id", sa.Text(), nullable=False),
        sa.Column("target_workflow_id", sa.Text(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("tree_root_id", sa.Text(), nullable=False),
        sa.Column("target_key", sa.Text(), nullable=False),
        sa.Column("thread_ids", sa.Text(), nullable=False),
        sa.Column("threads_digest", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("activation_id", name=f"{activations}_pk"),
        schema=n.schema,
    )
    op.create_index(
        f"{activations}_source_workflow_id_tree_root_id_ix",
        activations,
        ["source_workflow_id", "tree_root_id"],
        schema=n.schema,
    )


def downgrade() -> None:
    """Drop the index and the table."""
    n = names()
    activations = n.table("activations")
    op.drop_index(
        f"{activations}_source_workflow_id_tree_root_id_ix", table_name=activations, schema=n.schema
    )
    op.drop_table(activations, schema=n.schema)
