"""Alembic environment of the record store: always online, on the connection the store hands in."""

from __future__ import annotations

from alembic import context

attributes = context.config.attributes
context.configure(
    connection=attributes["connection"],
    target_metadata=None,
    version_table=attributes["version_table"],
    version_table_schema=attributes["schema"],
)
with context.begin_transaction():
    context.run_migrations()
