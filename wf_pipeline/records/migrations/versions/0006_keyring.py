"""Keyring: named keyring values, key-encryption keys (KEKs) and wrapped data keys.

``keyring_meta`` holds named values of the keyring (the master-key check), written once.
``keks`` has one row per KEK (``kek_id`` primary key): its key manager, the manager's
reference to the material (NULL once destroyed), its lineage (artifact class, period
start and length in Unix epoch ms, generation), its state and lifecycle times in ms.
``data_keys`` has one row per encrypted artifact (``artifact_id`` primary key): the data
key wrapped by ``kek_id``, never the key itself. Neither references the threads table:
a shredded artifact's key row outlives every thread that used it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0006_keyring"
down_revision = "0005_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``<prefix>keyring_meta``, ``<prefix>keks`` and ``<prefix>data_keys`` with their indexes."""
    n = names()
    meta = n.table("keyring_meta")
    op.create_table(
        meta,
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=f"{meta}_pk"),
        schema=n.schema,
    )
    keks = n.table("keks")
    op.create_table(
        keks,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("kek_id", sa.Text(), nullable=False),
        sa.Column("manager", sa.Text(), nullable=False),
        sa.Column("key_ref", sa.LargeBinary(), nullable=True),
        sa.Column("artifact_class", sa.Text(), nullable=False),
        sa.Column("period_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("period_ms", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("rotated_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("retired_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("destroyed_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kek_id", name=f"{keks}_pk"),
        schema=n.schema,
    )
    op.create_index(
        f"{keks}_artifact_class_period_start_ms_generation_ix",
        keks,
        ["artifact_class", "period_start_ms", "generation"],
        schema=n.schema,
    )
    data_keys = n.table("data_keys")
    op.create_table(
        data_keys,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("artifact_id", sa.Text(), nullable=False),
        sa.Column("artifact_class", sa.Text(), nullable=False),
        sa.Column("kek_id", sa.Text(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("rewrapped_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("artifact_id", name=f"{data_keys}_pk"),
        schema=n.schema,
        # SQLite: rows live in the artifact_id B-tree, so a claim writes one tree, not two,
        # and a rewrap page (artifact_id order) touches neighbouring pages. PostgreSQL ignores it.
        sqlite_with_rowid=False,
    )
    op.create_index(
        f"{data_keys}_kek_id_artifact_id_ix", data_keys, ["kek_id", "artifact_id"], schema=n.schema
    )


def downgrade() -> None:
    """Drop the three tables and their indexes."""
    n = names()
    op.drop_index(f"{n.table('data_keys')}_kek_id_artifact_id_ix", n.table("data_keys"), schema=n.schema)
    op.drop_table(n.table("data_keys"), schema=n.schema)
    op.drop_index(
        f"{n.table('keks')}_artifact_class_period_start_ms_generation_ix", n.table("keks"), schema=n.schema
    )
    op.drop_table(n.table("keks"), schema=n.schema)
    op.drop_table(n.table("keyring_meta"), schema=n.schema)
