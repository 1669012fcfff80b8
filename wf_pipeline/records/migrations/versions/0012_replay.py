"""Replays: recorded requests and responses, gate findings, version pinning.

- ``turns`` gains ``request_digest`` (indexed: recorded responses are found by it),
  ``request`` (JSON: the digests and ids the request is derived from),
  ``response_artifact_id`` and ``response_source``;
- ``gates`` gains ``findings`` (JSON list) and ``rules_digest``;
- ``threads`` gains ``profile_version``, ``code_version`` and ``profile_artifact_id``.

Every column is nullable (``findings`` defaults to an empty list): rows recorded before
this revision keep NULL, read as "not recorded".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0012_replay"
down_revision = "0011_identity_approval"
branch_labels = None
depends_on = None

_TEXT_COLUMNS = {
    "turns": ("request_digest", "request", "response_artifact_id", "response_source"),
    "gates": ("rules_digest",),
    "threads": ("profile_version", "code_version", "profile_artifact_id"),
}


def upgrade() -> None:
    """Add the nullable text columns of `_TEXT_COLUMNS`, ``gates.findings`` and the request-digest index."""
    n = names()
    for table, columns in _TEXT_COLUMNS.items():
        for column in columns:
            op.add_column(n.table(table), sa.Column(column, sa.Text(), nullable=True), schema=n.schema)
    op.add_column(
        n.table("gates"),
        sa.Column("findings", sa.Text(), nullable=False, server_default="[]"),
        schema=n.schema,
    )
    turns = n.table("turns")
    op.create_index(f"{turns}_request_digest_ix", turns, ["request_digest"], schema=n.schema)


def downgrade() -> None:
    """Drop the index and the columns (SQLite 3.35 or newer: ``ALTER TABLE ... DROP COLUMN``)."""
    n = names()
    turns = n.table("turns")
    op.drop_index(f"{turns}_request_digest_ix", table_name=turns, schema=n.schema)
    op.drop_column(n.table("gates"), "findings", schema=n.schema)
    for table, columns in _TEXT_COLUMNS.items():
        for column in reversed(columns):
            op.drop_column(n.table(table), column, schema=n.schema)
