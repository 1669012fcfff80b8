"""Audit trail: the append-only hash chain of privileged reads.

``audit_events`` has one row per allowed or denied privileged read (``seq`` primary key,
the event's position; ``event_id`` unique), with the requester, grant, reason, scope,
artifact ids, outcome, denial code, payload bytes returned, policy version and the two
hashes of the chain. It references no other table: the trail outlives every thread,
grant and artifact it names.

The product only inserts into it. Triggers refuse the rest, so a bug or a stray
statement cannot rewrite history either: on PostgreSQL a row trigger rejects UPDATE and
DELETE and a statement trigger rejects TRUNCATE (one function raising
``restrict_violation``); on SQLite, which has no TRUNCATE, two row triggers
``RAISE(ABORT)``. Only the database's owner can drop or disable them; the hash chain
detects what such a person changes (`wf_pipeline.security.audit.verify_audit_chain`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_pipeline.records.migrations import TableNames, names

revision = "0007_audit"
down_revision = "0006_keyring"
branch_labels = None
depends_on = None

_MESSAGE = "audit events are append-only"


def upgrade() -> None:
    """Create ``<prefix>audit_events``, its indexes and the triggers that refuse updates and deletes."""
    n = names()
    audit = n.table("audit_events")
    op.create_table(
        audit,
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("artifact_ids", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("policy_version", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("event_hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=f"{audit}_pk"),
        sa.UniqueConstraint("event_id", name=f"{audit}_event_id_uq"),
        schema=n.schema,
    )
    for column in ("at_ms", "grant_id", "event_hash"):
        op.create_index(f"{audit}_{column}_ix", audit, [column], schema=n.schema)
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers(n)
    else:
        _sqlite_triggers(n)


def _qualified(n: TableNames, name: str) -> str:
    return f'"{n.schema}"."{name}"' if n.schema else f'"{name}"'


def _postgres_triggers(n: TableNames) -> None:
    audit = n.table("audit_events")
    function = _qualified(n, f"{audit}_append_only")
    op.execute(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{_MESSAGE}: % refused on %', TG_OP, TG_TABLE_NAME "
        "USING ERRCODE = 'restrict_violation'; END $$"
    )
    op.execute(
        f'CREATE TRIGGER "{audit}_no_change" BEFORE UPDATE OR DELETE ON {_qualified(n, audit)} '
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
    op.execute(
        f'CREATE TRIGGER "{audit}_no_truncate" BEFORE TRUNCATE ON {_qualified(n, audit)} '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )


def _sqlite_triggers(n: TableNames) -> None:
    audit = n.table("audit_events")
    for action in ("update", "delete"):
        op.execute(
            f'CREATE TRIGGER "{audit}_no_{action}" BEFORE {action.upper()} ON "{audit}" '
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}: {action.upper()} refused'); END"
        )


def downgrade() -> None:
    """Drop the triggers, the table and its indexes."""
    n = names()
    audit = n.table("audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'DROP TRIGGER IF EXISTS "{audit}_no_truncate" ON {_qualified(n, audit)}')
        op.execute(f'DROP TRIGGER IF EXISTS "{audit}_no_change" ON {_qualified(n, audit)}')
        op.execute(f"DROP FUNCTION IF EXISTS {_qualified(n, f'{audit}_append_only')}()")
    else:
        for action in ("update", "delete"):
            op.execute(f'DROP TRIGGER IF EXISTS "{audit}_no_{action}"')
    for column in ("event_hash", "grant_id", "at_ms"):
        op.drop_index(f"{audit}_{column}_ix", audit, schema=n.schema)
    op.drop_table(audit, schema=n.schema)
