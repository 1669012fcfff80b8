"""Alembic environment of the record store: always online, on the connection the store hands in."""

from __future__ import annotations

from alembic import context


def run_migrations() -> None:
    """Run the pending revisions on ``config.attributes["connection"]``.

    The store (`wf_pipeline.records.migrate`) puts the connection, its schema, its table
    prefix and its version table into the alembic config's attributes; the version table
    lives in the store's schema (``version_table_schema``).
    """
    attributes = context.config.attributes
    context.configure(
        connection=attributes["connection"],
        target_metadata=None,
        version_table=attributes["version_table"],
        version_table_schema=attributes["schema"],
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic executes this file as a script of its own name; imported as a module of the
# package (by a tool that imports every module), it only defines the function.
if __name__ != "wf_pipeline.records.migrations.env":
    run_migrations()
