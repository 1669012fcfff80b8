"""DuckDB over the telemetry store: a connection with the product's views, and one-shot queries.

The views are those of ``views.sql`` (shipped in this package; `VIEWS_SQL` is its path),
run on a fresh in-memory DuckDB connection after setting its variables ``wf_telemetry``
(the store's location) and ``wf_archive`` (``$WF_HOME/archive``). A store that is not on
the local disk is reached through its fsspec filesystem, registered with DuckDB
(``DuckDBPyConnection.register_filesystem``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from wf_pipeline.errors import TELEMETRY_QUERY_INVALID, TelemetryError
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.store import TelemetryStore, seed_archive

__all__ = ["VIEWS", "VIEWS_SQL", "connect", "connect_store", "run_query", "view_columns"]

#: The shipped view definitions (a plain DuckDB SQL file; its header says how to run it by hand).
VIEWS_SQL: Path = Path(str(resources.files("wf_pipeline.telemetry").joinpath("views.sql")))


def archive_location(settings: Settings) -> str:
    """Where archived record rows live (``$WF_HOME/archive``), the ``wf_archive`` variable."""
    return str(settings.home / "archive")


def connect_store(store: TelemetryStore, archive: str | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with ``store``'s views created.

    Args:
        store: the telemetry store (seeded here when empty, so every view resolves).
        archive: the ``wf_archive`` location (None: ``<store root>/../archive``).

    Returns:
        The open connection; the caller closes it.
    """
    store.ensure_seeded()
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    archive = archive if archive is not None else store.location.rsplit("/", 1)[0] + "/archive"
    seed_archive(archive)
    con.execute("SET VARIABLE wf_telemetry = ?", [store.location])
    con.execute("SET VARIABLE wf_archive = ?", [archive])
    con.execute(VIEWS_SQL.read_text(encoding="utf-8"))
    return con


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over ``settings.telemetry_url`` with the variables set and the views created.

    Returns:
        An open in-memory connection; the caller closes it. Queries that must not meet a
        compaction half done hold ``TelemetryStore(settings.telemetry_url).read_lock()``,
        as `run_query` does.
    """
    return connect_store(TelemetryStore(settings.telemetry_url), archive_location(settings))


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL statement over the telemetry views.

    Args:
        settings: locate the store (``telemetry_url``) and the archive (``home``).
        sql: DuckDB SQL; the views of `VIEWS` are defined.

    Returns:
        (column names, rows as tuples of Python values); a statement without a result gives
        ``([], [])``.

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <DuckDB's message>`` (first line of it)
            for SQL DuckDB rejects.
    """
    store = TelemetryStore(settings.telemetry_url)
    con = connect_store(store, archive_location(settings))
    try:
        # The shared lock spans binding (which globs the files) and reading them.
        with store.read_lock():
            try:
                con.execute(sql)
                if con.description is None:
                    return [], []
                columns = [column[0] for column in con.description]
                return columns, con.fetchall()
            except duckdb.Error as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TelemetryError(TELEMETRY_QUERY_INVALID, message) from None
    finally:
        con.close()


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
