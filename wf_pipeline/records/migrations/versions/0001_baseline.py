"""Baseline: the schema of the record store as the release before migrations created it.

Frozen on purpose: later model fields arrive through later revisions, never by editing
this one. Stores created before migrations existed hold exactly these tables and are
stamped at this revision on open.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import names

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _big(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    """Create the nine tables, their keys, uniqueness, thread references and indexes, and schema_meta."""
    n = names()
    schema = n.schema
    threads = n.table("threads")

    def table(name: str, *columns: sa.Column, key: tuple[str, ...], unique=(), thread_fk=False) -> None:
        full = n.table(name)
        constraints: list = [sa.PrimaryKeyConstraint(*key, name=f"{full}_pk")]
        constraints += [sa.UniqueConstraint(*cols, name=f"{full}_{'_'.join(cols)}_uq") for cols in unique]
        if thread_fk:
            target = f"{schema}.{threads}.thread_id" if schema else f"{threads}.thread_id"
            constraints.append(sa.ForeignKeyConstraint(["thread_id"], [target], name=f"{full}_thread_id_fk"))
        op.create_table(full, *columns, *constraints, schema=schema)

    def index(name: str, *cols: str) -> None:
        full = n.table(name)
        op.create_index(f"{full}_{'_'.join(cols)}_ix", full, list(cols), schema=schema)

    table(
        "nodes",
        _big("schema_version"),
        _text("node_id"),
        _text("root_id"),
        _text("path"),
        _text("kind"),
        _text("parent_path", True),
        _big("size"),
        _text("content_digest", True),
        _text("omitted", True),
        _big("scanned_at_ms"),
        key=("node_id", "path"),
    )
    index("nodes", "root_id", "path")
    table(
        "targets",
        _big("schema_version"),
        _text("target_key"),
        _text("root_path"),
        _text("path"),
        _big("registered_at_ms"),
        key=("target_key",),
    )
    table(
        "threads",
        _big("schema_version"),
        _text("thread_id"),
        _text("workflow_id"),
        _text("target_node_id"),
        _text("target_frame_id"),
        _text("target_key"),
        _text("target_path"),
        _text("status"),
        _big("created_at_ms"),
        _big("updated_at_ms"),
        _big("last_turn_seq"),
        key=("thread_id",),
    )
    index("threads", "workflow_id", "status")
    table(
        "turns",
        _big("schema_version"),
        _text("turn_record_id"),
        _text("thread_id"),
        _text("turn_id"),
        _big("turn_seq"),
        _big("attempt"),
        _text("status"),
        _text("input_artifact_ids"),
        _text("output_artifact_id", True),
        _big("started_at_ms"),
        _big("ended_at_ms", True),
        _text("error_code", True),
        _text("error_text", True),
        sa.Column("provider_called", sa.Boolean(), nullable=False),
        key=("turn_record_id",),
        unique=(("thread_id", "turn_id", "attempt"),),
        thread_fk=True,
    )
    table(
        "gates",
        _big("schema_version"),
        _text("gate_record_id"),
        _text("thread_id"),
        _text("turn_id"),
        _text("gate_id"),
        _big("attempt"),
        _text("outcome"),
        _text("reasons"),
        _big("evaluated_at_ms"),
        key=("gate_record_id",),
        thread_fk=True,
    )
    index("gates", "thread_id")
    table(
        "prompt_links",
        _big("schema_version"),
        _text("prompt_link_id"),
        _text("thread_id"),
        _text("turn_id"),
        _text("node_id"),
        _text("frame_id"),
        _text("system_prompt_artifact_id", True),
        _text("user_prompt_template_artifact_id", True),
        _text("rendered_prompt_artifact_id", True),
        _text("context_artifact_id", True),
        _big("created_at_ms"),
        key=("prompt_link_id",),
        thread_fk=True,
    )
    index("prompt_links", "thread_id")
    table(
        "artifact_links",
        _big("schema_version"),
        _text("artifact_link_id"),
        _text("artifact_id"),
        _text("thread_id"),
        _text("turn_id"),
        _big("attempt"),
        _text("role"),
        _big("size"),
        _big("created_at_ms"),
        key=("artifact_link_id",),
        thread_fk=True,
    )
    index("artifact_links", "thread_id")
    index("artifact_links", "artifact_id")
    table(
        "frames",
        _big("schema_version"),
        _text("frame_id"),
        _text("node_id"),
        _text("frame_type"),
        _text("artifact_id"),
        _text("thread_id"),
        _text("metadata"),
        _big("created_at_ms"),
        key=("frame_id",),
        unique=(("node_id", "frame_type", "artifact_id"),),
    )
    index("frames", "node_id", "frame_type", "created_at_ms")
    schema_meta = op.create_table(
        n.table("schema_meta"),
        _text("key"),
        _text("value"),
        sa.PrimaryKeyConstraint("key", name=f"{n.table('schema_meta')}_pk"),
        schema=schema,
    )
    # Version 1 of the record models (metadata.records.SCHEMA_VERSION at this revision).
    op.bulk_insert(schema_meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    """Drop every table of the baseline, children before the threads they reference."""
    n = names()
    for name in ("schema_meta", "frames", "artifact_links", "prompt_links", "gates", "turns", "threads"):
        op.drop_table(n.table(name), schema=n.schema)
    op.drop_table(n.table("targets"), schema=n.schema)
    op.drop_table(n.table("nodes"), schema=n.schema)
