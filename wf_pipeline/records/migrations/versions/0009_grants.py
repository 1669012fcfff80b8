"""Identities and grants: who may sign and hold grants, and each grant issued with its usage.

``identities`` has one row per identity (``name`` primary key): its raw Ed25519 public
key (32 bytes), its role (``admin`` or ``reader``) and when it was registered (ms). The
private key is never stored. ``grants`` has one row per grant issued (``grant_id``
primary key): its issuer, grantee, capability and scope, its validity (ms), reason codes
(canonical JSON text), byte budget and rate limit, its revocation time, and the usage
counters a read updates with one conditional UPDATE. Neither references the threads
table: both outlive any thread. ``prompt_links`` gets an index on each payload column
(``rendered_prompt_artifact_id``, ``context_artifact_id``): a privileged read finds the
links of one artifact without scanning them all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0009_grants"
down_revision = "0008_annotations"
branch_labels = None
depends_on = None


_PAYLOAD_COLUMNS = ("rendered_prompt_artifact_id", "context_artifact_id")


def upgrade() -> None:
    """Create ``<prefix>identities`` and ``<prefix>grants``; index the prompt links' payload columns."""
    n = names()
    links = n.table("prompt_links")
    for column in _PAYLOAD_COLUMNS:
        op.create_index(f"{links}_{column}_ix", links, [column], schema=n.schema)
    identities = n.table("identities")
    op.create_table(
        identities,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=f"{identities}_pk"),
        schema=n.schema,
    )
    grants = n.table("grants")
    op.create_table(
        grants,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("grant_id", sa.Text(), nullable=False),
        sa.Column("grant_digest", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("grantee", sa.Text(), nullable=False),
        sa.Column("capability", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=True),
        sa.Column("node_id", sa.Text(), nullable=True),
        sa.Column("min_seq", sa.BigInteger(), nullable=True),
        sa.Column("max_seq", sa.BigInteger(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("not_before_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rate_reads", sa.BigInteger(), nullable=False),
        sa.Column("rate_window_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("bytes_used", sa.BigInteger(), nullable=False),
        sa.Column("reads", sa.BigInteger(), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("window_reads", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grant_id", name=f"{grants}_pk"),
        schema=n.schema,
    )


def downgrade() -> None:
    """Drop both tables and the two prompt-link indexes."""
    n = names()
    links = n.table("prompt_links")
    for column in _PAYLOAD_COLUMNS:
        op.drop_index(f"{links}_{column}_ix", links, schema=n.schema)
    op.drop_table(n.table("grants"), schema=n.schema)
    op.drop_table(n.table("identities"), schema=n.schema)
