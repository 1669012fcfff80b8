"""Engines for the record store and the translation of driver failures into codes.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so several
processes, e.g. Dagster's multiprocess executor and the CLI, can share one file.
PostgreSQL is reached through psycopg2. Messages never carry a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.pool import StaticPool

from wf_pipeline.errors import (
    RECORD_BAD_URL,
    RECORD_INTEGRITY,
    RECORD_STORAGE_ERROR,
    RECORD_UNAVAILABLE,
    RecordError,
    masked_url,
    os_reason,
)

SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
POSTGRES_DRIVERS = {"postgresql", "postgresql+psycopg2"}
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10
SQL_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


def parse_url(url: str) -> URL:
    """Parse and normalise a SQL record-store URL; ``postgresql://`` means psycopg2.

    Returns SQLAlchemy's URL with driver ``sqlite`` or ``postgresql+psycopg2``. Raises
    ``RECORD_BAD_URL`` for an unparsable URL or another scheme (the message names the
    scheme, never the password).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise RecordError(RECORD_BAD_URL, "record store URL cannot be parsed") from exc
    if parsed.drivername in SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite")
    if parsed.drivername in POSTGRES_DRIVERS:
        # No host means libpq's local socket, which is a valid choice.
        return parsed.set(drivername="postgresql+psycopg2")
    raise RecordError(
        RECORD_BAD_URL,
        f"unsupported record store URL scheme {parsed.drivername!r}; use sqlite:/// or postgresql://",
        scheme=parsed.drivername,
    )


def safe_url(url: URL) -> str:
    """``url`` as text with its password masked (``***``), for messages and logs (`masked_url`)."""
    return masked_url(url.render_as_string(hide_password=False))


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database, in any of SQLite's spellings.

    ``sqlite://``, ``sqlite:///:memory:``, and URI filenames (``uri=true``) naming
    ``file::memory:`` or carrying ``mode=memory`` (SQLite's "In-Memory Databases" and
    "URI Filenames" documents).
    """
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    mode = url.query.get("mode")
    return database.startswith("file::memory:") or (database.startswith("file:") and mode == "memory")


def create_record_engine(url: URL) -> Engine:
    """An engine for a parsed URL (see `parse_url`).

    SQLite: WAL journal, busy timeout of ``SQLITE_BUSY_TIMEOUT_MS`` (ms), foreign keys
    on, the file's folder created (``RECORD_UNAVAILABLE`` if it cannot be). PostgreSQL:
    pre-pinged pooled connections, connect timeout of ``POSTGRES_CONNECT_TIMEOUT_S`` (s).
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    )


def _sqlite_engine(url: URL) -> Engine:
    if is_memory_sqlite(url):
        # One shared connection, or every checkout would see a fresh empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(url.database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordError(
                RECORD_UNAVAILABLE, f"cannot create the folder of the record store {path}", path=str(path)
            ) from exc
        engine = create_engine(
            url.set(database=str(path)), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not is_memory_sqlite(url):
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


@contextmanager
def translated_errors(url: URL, action: str) -> Iterator[None]:
    """Turn driver failures during ``action`` into RECORD_ codes, keeping passwords out.

    Integrity and data errors become ``RECORD_INTEGRITY``; operational and interface
    errors (unreachable server, locked file) become ``RECORD_UNAVAILABLE`` (``RECORD_STORAGE_ERROR``
    for a full disk or an I/O error), and so does any other driver error (a SQLite file
    that is not a database).
    """
    try:
        yield
    except IntegrityError as exc:
        raise RecordError(
            RECORD_INTEGRITY,
            f"{action} violates a record constraint: {driver_message(exc, url)}",
            action=action,
        ) from exc
    except DataError as exc:
        raise RecordError(
            RECORD_INTEGRITY,
            f"{action} stores a value the column rejects: {driver_message(exc, url)}",
            action=action,
        ) from exc
    except (OperationalError, InterfaceError) as exc:
        reason = storage_failure(exc)
        if reason is not None:
            raise RecordError(
                RECORD_STORAGE_ERROR,
                f"record store {safe_url(url)} could not write during {action}: {reason}",
                action=action,
                url=safe_url(url),
                reason=reason,
            ) from exc
        raise RecordError(
            RECORD_UNAVAILABLE,
            f"record store {safe_url(url)} unavailable during {action}: {driver_message(exc, url)}",
            action=action,
            url=safe_url(url),
        ) from exc
    except DBAPIError as exc:
        # Any other driver failure (SQLite's "file is not a database": the file is damaged or
        # is something else) still means the store cannot be used: a code, not a traceback.
        raise RecordError(
            RECORD_UNAVAILABLE,
            f"record store {safe_url(url)} unusable during {action}: {driver_message(exc, url)}",
            action=action,
            url=safe_url(url),
        ) from exc


# SQLite's result texts for a full disk and a failed read or write (sqlite3.h: SQLITE_FULL,
# SQLITE_IOERR), and PostgreSQL's SQLSTATEs disk_full and io_error (Appendix A, class 53 and 58).
_SQLITE_STORAGE_TEXTS = ("database or disk is full", "disk i/o error")
_POSTGRES_STORAGE_STATES = {"53100": "disk full (53100)", "58030": "I/O error (58030)"}


def storage_failure(exc: Exception) -> str | None:
    """The storage reason of a driver failure (full disk, I/O error), or None for any other failure.

    Args:
        exc: a SQLAlchemy ``DBAPIError``.

    Returns:
        SQLite's own text (``database or disk is full``, ``disk I/O error``) or
        PostgreSQL's condition with its SQLSTATE, followed by the operating system's
        reason when one is chained (`wf_pipeline.errors.os_reason`); None otherwise.
    """
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    lowered = text.lower()
    state = getattr(original, "pgcode", None)
    if state in _POSTGRES_STORAGE_STATES:
        return f"{_POSTGRES_STORAGE_STATES[state]}: {text[:300]}"
    if any(marker in lowered for marker in _SQLITE_STORAGE_TEXTS):
        return text[:300]
    return os_reason(original) if isinstance(original, OSError) else None


def driver_message(exc: Exception, url: URL) -> str:
    """The driver's message of ``exc`` on one line, at most 500 characters, password masked."""
    original = getattr(exc, "orig", None) or exc
    message = " ".join(str(original).split())
    if url.password:
        message = message.replace(str(url.password), "***")
    return message[:500]
