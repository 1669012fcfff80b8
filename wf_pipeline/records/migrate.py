"""Bring a record store's tables to the newest revision when the store opens.

Every process opens the store, so the common case costs one query: the revision in the
version table is read and compared with `HEAD_REVISION`, without loading alembic. Only
a database behind head takes the slow path, under a database-wide lock so concurrent
first opens do not race: PostgreSQL's transaction-scoped advisory lock, SQLite's
``BEGIN IMMEDIATE`` write lock. Under the lock the revision is read again, a store
written before migrations existed (its tables present, no version table) is stamped at
the baseline, and alembic upgrades to head.

Each table prefix has its own version table (``<prefix>alembic_version``) in the
store's schema (alembic's ``version_table_schema``), so stores sharing a database
migrate independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from typing import Any

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError

from wf_pipeline.errors import RECORD_SCHEMA_MISMATCH, RECORD_UNAVAILABLE, RecordError
from wf_pipeline.records.connection import safe_url, translated_errors
from wf_pipeline.records.migrations import BASELINE_REVISION, HEAD_REVISION

MIGRATIONS_PACKAGE = "wf_pipeline.records.migrations"


def version_table(table_prefix: str) -> str:
    """Name of the alembic version table of the stores with ``table_prefix``."""
    return f"{table_prefix}alembic_version"


def migrate_to_head(engine: Engine, url: URL, *, schema: str | None, table_prefix: str) -> None:
    """Upgrade the store's tables to `HEAD_REVISION`, creating them in an empty database.

    Args:
        engine: the store's engine.
        url: its URL (for messages; the password is masked).
        schema: the PostgreSQL schema of the tables, created if missing; None on SQLite.
        table_prefix: the prefix of every table name.

    Raises ``RECORD_SCHEMA_MISMATCH`` when the database is at a revision this code does
    not know (written by a newer release), ``RECORD_UNAVAILABLE`` when the database
    cannot be reached or migrated.
    """
    if read_revisions(engine, schema=schema, table_prefix=table_prefix) == {HEAD_REVISION}:
        return
    with translated_errors(url, "migrate"), _migration_lock(engine, schema, table_prefix) as conn:
        current = _revisions(conn, schema, table_prefix)
        if current == {HEAD_REVISION}:
            return  # another process migrated while this one waited for the lock
        known = _known_revisions()
        unknown = current - set(known)
        if unknown:
            raise RecordError(
                RECORD_SCHEMA_MISMATCH,
                f"record store {safe_url(url)} is at revision {sorted(unknown)[0]}, "
                f"which this release does not know (its newest is {HEAD_REVISION})",
                stored=sorted(unknown)[0],
                expected=HEAD_REVISION,
            )
        from alembic import command
        from alembic.util import CommandError

        config = _alembic_config(conn, schema, table_prefix)
        try:
            if not current and _has_pre_migration_tables(conn, schema, table_prefix):
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, "head")
        except CommandError as exc:
            # Alembic's own failures (a broken revision chain); driver errors are translated above.
            raise RecordError(
                RECORD_UNAVAILABLE,
                f"cannot migrate record store {safe_url(url)} to {HEAD_REVISION}: {exc}",
                url=safe_url(url),
            ) from exc


def read_revisions(engine: Engine, *, schema: str | None, table_prefix: str) -> set[str]:
    """The revisions recorded in the store's version table; empty if it has none (yet)."""
    try:
        with engine.connect() as conn:
            return _revisions(conn, schema, table_prefix, probe=True)
    except DBAPIError:
        return set()  # no version table, or no database yet: the slow path finds out which


def _revisions(conn: Connection, schema: str | None, table_prefix: str, *, probe: bool = False) -> set[str]:
    table = _qualified(schema, version_table(table_prefix))
    if not probe and not inspect(conn).has_table(version_table(table_prefix), schema=schema):
        return set()
    return set(conn.execute(text(f"SELECT version_num FROM {table}")).scalars())


def _has_pre_migration_tables(conn: Connection, schema: str | None, table_prefix: str) -> bool:
    # The release before migrations always created schema_meta with the other tables.
    return inspect(conn).has_table(f"{table_prefix}schema_meta", schema=schema)


@contextmanager
def _migration_lock(engine: Engine, schema: str | None, table_prefix: str) -> Iterator[Connection]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # pysqlite leaves DDL outside transactions; an explicit write lock holds them in one.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            key = int.from_bytes(
                hashlib.sha256(f"wf_records:{schema}:{table_prefix}".encode()).digest()[:8],
                "big",
                signed=True,
            )
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            if schema is not None:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _alembic_config(conn: Connection, schema: str | None, table_prefix: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _script_location())
    config.attributes.update(
        connection=conn,
        schema=schema,
        table_prefix=table_prefix,
        version_table=version_table(table_prefix),
    )
    return config


def _script_location() -> str:
    # A real folder inside the installed package (wheels install unzipped).
    return str(resources.files(MIGRATIONS_PACKAGE))


@lru_cache(maxsize=1)
def _known_revisions() -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(_script_location())
    return tuple(revision.revision for revision in script.walk_revisions())


def script_head() -> str:
    """The head revision as the migration scripts declare it (tests compare it with `HEAD_REVISION`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(_script_location()).get_current_head() or ""


def _qualified(schema: str | None, table: str) -> str:
    return f'"{schema}"."{table}"' if schema else f'"{table}"'
