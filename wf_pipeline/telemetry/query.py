"""DuckDB over the telemetry store: a connection with the product's views, and one-shot queries.

The views are those of ``views.sql`` (shipped in this package; `VIEWS_SQL` is its path),
run on a fresh in-memory DuckDB connection after setting its variables ``wf_telemetry``
(the store's location) and ``wf_archive`` (``$WF_HOME/archive``, `archive_location`). A
store that is not on the local disk is reached through its fsspec filesystem, registered
with DuckDB (``DuckDBPyConnection.register_filesystem``).

`run_query` is read-only: the text must be exactly one SELECT-like statement, judged by
DuckDB's own parser (``duckdb.extract_statements``), and the connection it runs on may
only read files under the telemetry and archive roots (DuckDB's ``allowed_directories``
with ``enable_external_access = false`` and ``lock_configuration = true``, as DuckDB's
"Securing DuckDB" guide describes), so COPY, ATTACH, SET, DDL, ``read_csv('/etc/passwd')``
and the like are refused.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from wf_pipeline.errors import TELEMETRY_QUERY_INVALID, TelemetryError
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.store import TelemetryStore, seed_archive

__all__ = [
    "VIEWS",
    "VIEWS_SQL",
    "archive_location",
    "check_read_only",
    "connect",
    "connect_store",
    "create_views",
    "install_views",
    "lock_down",
    "open_query",
    "run_query",
    "view_columns",
]

#: The shipped view definitions (a plain DuckDB SQL file; its header says how to run it by hand).
VIEWS_SQL: Path = Path(str(resources.files("wf_pipeline.telemetry").joinpath("views.sql")))


def archive_location(settings: Settings) -> str:
    """Where archived record rows live: always ``$WF_HOME/archive``, the ``wf_archive`` variable.

    The one answer for compaction, retention and the views; it does not move with
    ``WF_TELEMETRY_URL`` (the archive holds records, not telemetry).
    """
    return str(settings.home / "archive")


#: Statement types `run_query` runs: plain queries (SELECT, FROM-first, VALUES, SHOW,
#: DESCRIBE and SUMMARIZE all parse as SELECT in DuckDB).
_READ_ONLY_TYPES = frozenset({duckdb.StatementType.SELECT})


def check_read_only(sql: str) -> None:
    """Accept ``sql`` only when DuckDB parses it as exactly one SELECT-like statement.

    Args:
        sql: the text a user gave ``wf telemetry query``.

    Returns:
        None.

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <reason>`` for text DuckDB cannot parse,
            no statement, several statements, or a statement of another type (COPY,
            ATTACH, SET, PRAGMA, CREATE, DROP, INSERT, EXPLAIN...), with its type.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise TelemetryError(TELEMETRY_QUERY_INVALID, _first_line(exc)) from None
    if len(statements) != 1:
        raise TelemetryError(
            TELEMETRY_QUERY_INVALID,
            f"give exactly one SELECT statement, got {len(statements)} statements",
            statements=len(statements),
        )
    kind = statements[0].type
    if kind not in _READ_ONLY_TYPES:
        raise TelemetryError(
            TELEMETRY_QUERY_INVALID,
            f"only a SELECT statement may run over the telemetry views, got a {kind.name} statement",
            statement_type=kind.name,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sql_text(value: str) -> str:
    # A SQL string literal: single quotes doubled (SQL standard quoting).
    return "'" + value.replace("'", "''") + "'"


def lock_down(con: duckdb.DuckDBPyConnection, store: TelemetryStore, archive: str) -> None:
    """Limit ``con``'s file access to the telemetry and archive roots, for good.

    Sets DuckDB's ``allowed_directories`` to the two roots, then ``enable_external_access
    = false`` (only those directories stay readable) and ``lock_configuration = true`` (no
    later SET can undo it). Call it after the views are created.
    """
    roots = [store.location.rstrip("/") + "/", archive.rstrip("/") + "/"]
    con.execute(f"SET allowed_directories = [{', '.join(_sql_text(root) for root in roots)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def create_views(con: duckdb.DuckDBPyConnection, store: TelemetryStore, archive: str) -> None:
    """Create ``store``'s views (``views.sql``) on the open connection ``con``.

    Args:
        con: any DuckDB connection (a new in-memory one, or one a Dagster ``DuckDBResource`` opened).
        store: the telemetry store (seeded here when empty, so every view resolves).
        archive: the ``wf_archive`` location (`archive_location`); its zero-row seed file is
            written here when missing, so ``archived_threads`` resolves before the first
            compaction. The telemetry writer never touches it.

    Returns:
        None; the variables ``wf_telemetry`` and ``wf_archive`` and the views are set on ``con``.

    Raises:
        TelemetryError: ``TELEMETRY_WRITE_FAILED`` when a seed file cannot be written.
    """
    store.ensure_seeded()
    if not store.local:
        con.register_filesystem(store.fs)
    seed_archive(archive)
    con.execute("SET VARIABLE wf_telemetry = ?", [store.location])
    con.execute("SET VARIABLE wf_archive = ?", [archive])
    con.execute(VIEWS_SQL.read_text(encoding="utf-8"))


def connect_store(store: TelemetryStore, archive: str) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with ``store``'s views created (`create_views`).

    Returns:
        The open connection; the caller closes it.
    """
    con = duckdb.connect()
    create_views(con, store, archive)
    return con


@contextlib.contextmanager
def install_views(con: duckdb.DuckDBPyConnection, settings: Settings) -> Iterator[None]:
    """Create the views over ``settings.telemetry_url`` on ``con`` and hold the store's shared read lock.

    For connections the caller opened (a Dagster ``DuckDBResource``): inside the block,
    queries see each row once even while a compaction runs, as with `run_query`.
    """
    store = TelemetryStore(settings.telemetry_url)
    # Under the lock: creating the views reads every file's schema (union_by_name).
    with store.read_lock():
        create_views(con, store, archive_location(settings))
        yield


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over ``settings.telemetry_url`` with the variables set and the views created.

    Returns:
        An open in-memory connection; the caller closes it. Queries that must not meet a
        compaction half done hold ``TelemetryStore(settings.telemetry_url).read_lock()``,
        as `run_query` does. The views are created under that lock: creating them reads
        every file's schema (``union_by_name``), so a compaction never removes a file
        midway.
    """
    store = TelemetryStore(settings.telemetry_url)
    with store.read_lock():
        return connect_store(store, archive_location(settings))


#: Rows fetched from DuckDB at a time while streaming a result (memory stays near one batch).
FETCH_BATCH_ROWS = 10_000


@contextlib.contextmanager
def open_query(settings: Settings, sql: str) -> Iterator[tuple[list[str], Iterator[tuple[Any, ...]]]]:
    """Run one read-only SQL statement over the telemetry views and stream its rows.

    Args:
        settings: locate the store (``telemetry_url``) and the archive (``home``).
        sql: one DuckDB SELECT statement (`check_read_only`); the views of `VIEWS` are
            defined, and only files under the telemetry and archive roots can be read
            (`lock_down`).

    Returns:
        A context manager giving (column names, an iterator of rows as tuples of Python
        values, fetched `FETCH_BATCH_ROWS` at a time). The store's shared read lock and the
        connection are held until the block ends, so a compaction is seen whole or not at all.

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <reason>``: not exactly one SELECT
            statement, or DuckDB's message (first line of it) for SQL it rejects, a file
            outside the roots included (while executing or fetching).
    """
    check_read_only(sql)
    store = TelemetryStore(settings.telemetry_url)
    archive = archive_location(settings)
    # The shared lock spans creating the views (which reads every file's schema: the
    # views read with union_by_name), binding (which globs the files) and reading them.
    with store.read_lock():
        con = connect_store(store, archive)
        try:
            lock_down(con, store, archive)
            try:
                con.execute(sql)
            except duckdb.Error as exc:
                raise TelemetryError(TELEMETRY_QUERY_INVALID, _first_line(exc)) from None
            columns = [column[0] for column in con.description or ()]

            def rows() -> Iterator[tuple[Any, ...]]:
                if con.description is None:
                    return
                while True:
                    try:
                        batch = con.fetchmany(FETCH_BATCH_ROWS)
                    except duckdb.Error as exc:
                        raise TelemetryError(TELEMETRY_QUERY_INVALID, _first_line(exc)) from None
                    if not batch:
                        return
                    yield from batch

            yield columns, rows()
        finally:
            con.close()


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only SQL statement over the telemetry views (`open_query`) and collect its rows.

    Returns:
        (column names, rows as tuples of Python values).

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <reason>`` (see `open_query`).
    """
    with open_query(settings, sql) as (columns, rows):
        return columns, list(rows)


def view_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """View name -> [(column, DuckDB type)] of the views ``con`` defines, from DuckDB's catalog."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE table_name IN (SELECT view_name FROM duckdb_views() WHERE NOT internal) "
        "ORDER BY table_name, column_index"
    ).fetchall()
    views: dict[str, list[tuple[str, str]]] = {}
    for view, column, kind in rows:
        views.setdefault(view, []).append((column, kind))
    return views


class _Views(Mapping[str, list[tuple[str, str]]]):
    """The views of ``views.sql`` and their columns, read once from DuckDB's catalog over an empty store."""

    def __init__(self) -> None:
        self._views: dict[str, list[tuple[str, str]]] | None = None

    def _load(self) -> dict[str, list[tuple[str, str]]]:
        if self._views is None:
            with tempfile.TemporaryDirectory() as folder:
                con = connect_store(TelemetryStore(folder), str(Path(folder) / "archive"))
                try:
                    self._views = view_columns(con)
                finally:
                    con.close()
        return self._views

    def __getitem__(self, name: str) -> list[tuple[str, str]]:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


#: View name -> [(column, DuckDB type)], from DuckDB's catalog (computed on first use).
VIEWS: Mapping[str, list[tuple[str, str]]] = _Views()
