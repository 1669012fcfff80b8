"""Alembic migrations of the record store, shipped inside the package.

The store runs them itself on open (`wf_pipeline.records.migrate`); there is no
``alembic.ini``. Table names carry the store's prefix and live in its schema, so a
revision reads both through `names` instead of hard-coding ``wf_``.

To change the schema: add a revision under ``versions/`` whose ``down_revision`` is the
current head, write its operations with `names`, and set `HEAD_REVISION` to its id (a
test checks that it matches the scripts). Revision ids are ``NNNN_<what>``.
"""

from __future__ import annotations

from dataclasses import dataclass

BASELINE_REVISION = "0001_baseline"
# The newest revision, known without loading alembic: opening a store that is already
# at head reads one row and compares it to this.
HEAD_REVISION = "0015_segments"


@dataclass(frozen=True)
class TableNames:
    """How a revision names things: ``prefix`` before each table, ``schema`` (or None) around them."""

    prefix: str
    schema: str | None

    def table(self, name: str) -> str:
        """The table called ``name`` in the model (``threads``) as stored (``wf_threads``)."""
        return f"{self.prefix}{name}"


def names() -> TableNames:
    """The prefix and schema of the store being migrated, from the running alembic context."""
    from alembic import context

    attributes = context.config.attributes
    return TableNames(prefix=attributes["table_prefix"], schema=attributes["schema"])
