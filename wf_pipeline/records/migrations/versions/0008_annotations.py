"""Annotations: the append-only log of annotation-key changes on frames, and its current view.

``annotation_events`` has one row per change (``frame_id``, ``key``, ``seq`` primary key):
its kind (``set``, ``clear``, or a ``snapshot`` compaction folded older events into),
value, the writing domain and time in ms, and how many events a snapshot folds. An index
on ``at_ms`` serves compaction, which folds events older than a key's window.
``annotations`` has one row per (``frame_id``, ``key``) with a value: the value after the
key's last event, that event's ``seq``, its domain and time. Neither references the
frames table: annotations outlive an archived thread's frame.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0008_annotations"
down_revision = "0007_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``<prefix>annotation_events`` (with its ``at_ms`` index) and ``<prefix>annotations``."""
    n = names()
    events = n.table("annotation_events")
    op.create_table(
        events,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("frame_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("folded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("frame_id", "key", "seq", name=f"{events}_pk"),
        schema=n.schema,
        sqlite_with_rowid=False,
    )
    op.create_index(f"{events}_at_ms_ix", events, ["at_ms"], schema=n.schema)
    view = n.table("annotations")
    op.create_table(
        view,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("frame_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("frame_id", "key", name=f"{view}_pk"),
        schema=n.schema,
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    """Drop both tables and the index."""
    n = names()
    op.drop_table(n.table("annotations"), schema=n.schema)
    events = n.table("annotation_events")
    op.drop_index(f"{events}_at_ms_ix", events, schema=n.schema)
    op.drop_table(events, schema=n.schema)
