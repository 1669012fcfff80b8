"""The telemetry store: Parquet files under one fsspec URL, hive-partitioned by day and workflow.

Layout (issue 9, item 2)::

    <root>/<table>/date=YYYY-MM-DD/workflow_id=<quoted id>/part-<ms>-<uuid>.parquet
    <root>/key_events/date=YYYY-MM-DD/event=<event>/part-<ms>-<uuid>.parquet
    <root>/audit_events/date=YYYY-MM-DD/outcome=<allow|deny>/part-<ms>-<uuid>.parquet

(``key_events`` and ``audit_events`` rows belong to no workflow: their second level is the
event kind or the outcome, and their day is that of ``event_at``; `PARTITIONS` gives each
table's two columns.)

``date`` is the UTC day of a row's ``ts_ms``; the workflow id is percent-quoted (RFC 3986,
nothing kept but unreserved characters), so ``/``, ``=`` or ``%`` in an id cannot make a
new directory level or a second ``key=value`` pair. Files keep every column, the workflow id
included, so a reader that ignores the directory names still sees whole rows.

Each table is seeded with one zero-row file
(``date=1970-01-01/workflow_id=_seed/part-0-seed.parquet``): a glob over the table then
always matches a file with the right schema, so the views work on an empty home, and the
seed sits at the same depth as every other file, so hive partitioning still sees two levels.

A flush writes one file per (day, workflow) of its batch: to a temporary name that no glob
of ``*.parquet`` matches, renamed into place on a local disk, or a single ``put`` on an
object store (which is atomic there). `TelemetryStore.compact` merges the small files of
closed days; readers that go through the product hold a shared lock on ``<root>/.lock`` for
the length of a query, and compaction swaps files only under the exclusive lock, so a query
sees each row exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import pyarrow
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from wf_pipeline.errors import (
    TELEMETRY_BAD_ARGUMENTS,
    TELEMETRY_BAD_URL,
    TELEMETRY_FILE_UNREADABLE,
    TELEMETRY_WRITE_FAILED,
    TelemetryError,
    WfError,
    masked_url,
    os_reason,
)
from wf_pipeline.metadata.archive import ARCHIVE_SEED_NAME, MARKER_TABLE, archive_schema
from wf_pipeline.security.sinks import scrub
from wf_pipeline.telemetry.schema import (
    AUDIT_EVENTS,
    KEY_EVENTS,
    TABLES,
    model_for,
    schema_for,
    validate_batch,
)

__all__ = [
    "PARTITIONS",
    "SEED_DATE",
    "CompactionResult",
    "TelemetryStore",
    "partition_dir",
    "quote_partition",
    "per_process_url",
    "seed_archive",
]

#: The day partition of the zero-row seed file of each table.
SEED_DATE = "1970-01-01"
_SEED_WORKFLOW = "_seed"
_SEED_NAME = "part-0-seed.parquet"
_JOURNAL = "_compaction.json"
_LOCK = ".lock"
# Parquet options: zstd is both small and fast to write and read in pyarrow and DuckDB;
# dictionary pages only for the columns with few distinct values (ids and sizes would fill
# a dictionary page and fall back to plain encoding, time spent for nothing); min/max
# statistics for the columns range filters use. Together they halve the write time.
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": [
        "workflow_id",
        "profile_version",
        "turn_id",
        "domain",
        "key",
        "mutability_class",
        "budget_bytes",
        "outcome",
        "error_code",
        "run_id",
        "branch",
    ],
    "write_statistics": ["ts_ms", "bytes"],
}
_KEY_EVENT_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["event", "artifact_class", "manager", "state", "outcome", "error_code"],
    "write_statistics": ["event_at"],
}
_AUDIT_EVENT_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["requester", "reason_code", "outcome", "code", "policy_version"],
    "write_statistics": ["event_at", "seq"],
}
#: Table -> (its time column, the column of its second partition level).
PARTITIONS: dict[str, tuple[str, str]] = {
    **{table: ("ts_ms", "workflow_id") for table in TABLES},
    KEY_EVENTS: ("event_at", "event"),
    AUDIT_EVENTS: ("event_at", "outcome"),
}
_DAY_MS = 86_400_000
_EPOCH = dt.date(1970, 1, 1)


def quote_partition(value: str) -> str:
    """A hive partition value for ``value``: percent-quoted, only RFC 3986 unreserved characters kept."""
    return quote(value, safe="")


def partition_dir(root: str, table: str, day: str, workflow_id: str) -> str:
    """The folder of ``table``'s rows of UTC ``day`` (YYYY-MM-DD) and ``workflow_id`` under ``root``.

    For ``key_events`` the second value is the event kind (`PARTITIONS`).
    """
    column = PARTITIONS.get(table, ("ts_ms", "workflow_id"))[1]
    return f"{root}/{table}/date={day}/{column}={quote_partition(workflow_id)}"


def _parquet_options(table: str) -> dict[str, Any]:
    if table == AUDIT_EVENTS:
        return _AUDIT_EVENT_PARQUET_OPTIONS
    return _KEY_EVENT_PARQUET_OPTIONS if table == KEY_EVENTS else _PARQUET_OPTIONS


@dataclass(frozen=True)
class CompactionResult:
    """What `TelemetryStore.compact` did.

    Attributes:
        partitions: (table, day, workflow) partitions merged into one file each.
        files_merged: small files removed (their rows now live in the merged files).
        rows: rows in the merged files.
        bytes_before: bytes of the small files; bytes_after: bytes of the merged files.
    """

    partitions: int
    files_merged: int
    rows: int
    bytes_before: int
    bytes_after: int


class TelemetryStore:
    """Parquet telemetry tables under one fsspec URL (the module docstring gives the layout).

    Args:
        url: a local path or any fsspec URL (``memory://telemetry``, ``s3://bucket/wf``...),
            usually ``settings.telemetry_url``.

    Raises:
        TelemetryError: ``TELEMETRY_BAD_URL`` when fsspec has no filesystem for ``url``.

    Attributes:
        fs: the fsspec filesystem; root: the folder in ``fs``'s terms; local: whether ``fs``
            is the local disk (then renames are atomic and ``.lock`` can be locked).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError, OSError) as exc:
            raise TelemetryError(
                TELEMETRY_BAD_URL,
                f"no filesystem serves telemetry URL {masked_url(url)}: {os_reason(exc)}",
                url=masked_url(url),
            ) from None
        self.root = root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        self._seeded = False

    # --- paths -----------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The root as DuckDB reads it: a local path, or ``protocol://path`` for a registered fsspec filesystem."""
        if self.local:
            return self.root
        return self.fs.unstrip_protocol(self.root)

    def files(self, table: str) -> list[str]:
        """Every Parquet file of ``table`` (the seed included), sorted; paths in ``fs``'s terms."""
        model_for(table)  # TELEMETRY_SCHEMA_INVALID for an unknown table
        return sorted(self.fs.glob(f"{self.root}/{table}/*/*/*.parquet"))

    # --- writing ---------------------------------------------------------------------------

    def ensure_seeded(self) -> None:
        """Write each table's zero-row seed file when it is missing (idempotent).

        The record archive is not touched here (it lives at ``$WF_HOME/archive`` whatever
        the telemetry URL, and is seeded by the query side), so an archive problem never
        costs telemetry rows. Raises
        ``TELEMETRY_WRITE_FAILED`` (figure: the OS reason) when it cannot be written.
        """
        if self._seeded:
            return
        for table in TABLES:
            folder = partition_dir(self.root, table, SEED_DATE, _SEED_WORKFLOW)
            path = f"{folder}/{_SEED_NAME}"
            if not self.fs.exists(path):
                self._write_file(folder, _SEED_NAME, schema_for(table).empty_table(), table)
        self._seeded = True

    def write(self, table: str, batch: pyarrow.Table) -> int:
        """Validate ``batch`` and write it as one Parquet file per (UTC day, workflow) it spans.

        Args:
            table: ``metadata_writes``, ``artifact_writes``, ``key_events`` or ``audit_events``.
            batch: rows with the table's columns (`wf_pipeline.telemetry.schema.schema_for`).

        Returns:
            Rows written (``batch.num_rows``); 0 writes no file.

        Raises:
            TelemetryError: ``TELEMETRY_SCHEMA_INVALID`` before anything is written;
                ``TELEMETRY_WRITE_FAILED`` (figures: table, OS reason) when a file cannot be
                written; files of other partitions of the same batch may then exist, each
                whole.

        Telemetry is a log sink: every string cell is written scrubbed (`security.sinks.scrub`).
        """
        batch = _scrubbed(validate_batch(table, batch))
        if batch.num_rows == 0:
            return 0
        self.ensure_seeded()
        time_column, part_column = PARTITIONS[table]
        for (day, workflow_id), part in _partitions(batch, time_column, part_column):
            folder = partition_dir(self.root, table, day, workflow_id)
            self._write_file(
                folder, f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex}.parquet", part, table
            )
        return batch.num_rows

    def _write_file(self, folder: str, name: str, part: pyarrow.Table, table: str) -> None:
        options = _parquet_options(table)
        final = f"{folder}/{name}"
        try:
            if self.local:
                self.fs.makedirs(folder, exist_ok=True)
                temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
                try:
                    pq.write_table(part, temp, **options)
                    self.fs.mv(temp, final)
                finally:
                    if self.fs.exists(temp):
                        self.fs.rm(temp)
            else:
                buffer = io.BytesIO()
                pq.write_table(part, buffer, **options)
                # One put: an object store shows the whole object or none of it.
                self.fs.pipe_file(final, buffer.getvalue())
        except (OSError, pyarrow.ArrowException) as exc:
            raise TelemetryError(
                TELEMETRY_WRITE_FAILED,
                f"cannot write telemetry file under {masked_url(self.url)}: {os_reason(exc)}",
                reason=os_reason(exc),
            ) from exc

    # --- reading ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def read_lock(self, *, exclusive: bool = False) -> Iterator[None]:
        """Hold ``<root>/.lock`` shared (queries) or exclusive (compaction swapping files).

        On a local disk this is ``flock(2)``; an object store has no lock, and there a
        query may meet a compaction half done (the merged file and its sources both
        listed), which its single put and deletes keep short.
        """
        if not self.local:
            yield
            return
        self.fs.makedirs(self.root, exist_ok=True)
        with open(f"{self.root}/{_LOCK}", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_table(self, table: str) -> pyarrow.Table:
        """Every row of ``table`` (under the shared lock), as one Arrow table with the table's schema.

        Raises ``TELEMETRY_FILE_UNREADABLE`` (figure: the file) when a file cannot be read.
        """
        with self.read_lock():
            parts = [self._read_file(path, table) for path in self.files(table)]
        return pyarrow.concat_tables(parts) if parts else schema_for(table).empty_table()

    def read_file(self, path: str, table: str, *, columns: list[str] | None = None) -> pyarrow.Table:
        """The rows of one file of ``table`` (``columns`` only, when given), with the table's schema.

        The caller holds the read lock. Raises ``TELEMETRY_FILE_UNREADABLE`` (figure: the
        file) when the file cannot be opened or is no Parquet file of ``table``'s schema: a
        damaged file gets a code naming it, never a raw pyarrow error.
        """
        # A column subset is read as stored; whole files are read against the table's schema.
        schema = schema_for(table) if columns is None else None
        try:
            with self.fs.open(path, "rb") as handle:
                return pq.read_table(handle, schema=schema, columns=columns)
        except (OSError, pyarrow.ArrowException) as exc:
            raise TelemetryError(
                TELEMETRY_FILE_UNREADABLE,
                f"telemetry file {path} of table {table} cannot be read: {type(exc).__name__}",
                path=path,
                table=table,
            ) from exc

    def _read_file(self, path: str, table: str) -> pyarrow.Table:
        return self.read_file(path, table)

    # --- compaction --------------------------------------------------------------------------

    def compact(self, before_date: dt.date | str) -> CompactionResult:
        """Merge the files of each partition of a day before ``before_date`` into one file.

        Steps per partition with two files or more: the merged rows (sorted by ts_ms) are
        written under a temporary name no reader globs; a journal names it and its sources;
        then, under the exclusive lock, the merged file is renamed in and the sources
        deleted; then the journal goes. A journal left by a crash is finished first (the
        merged file in place: delete the sources left; not in place: drop the temporary).

        Args:
            before_date: the first day not compacted (a ``date`` or YYYY-MM-DD); days
                before it are closed, no turn writes to them any more.

        Returns:
            A `CompactionResult` (counts; sizes in bytes).

        Raises:
            TelemetryError: ``TELEMETRY_BAD_ARGUMENTS`` for a date that is not YYYY-MM-DD;
                ``TELEMETRY_WRITE_FAILED`` when a file cannot be written, renamed or deleted.
        """
        cutoff = _as_date(before_date)
        partitions = files_merged = rows = bytes_before = bytes_after = 0
        try:
            for table in TABLES:
                part_column = PARTITIONS[table][1]
                for folder in sorted(self.fs.glob(f"{self.root}/{table}/date=*/{part_column}=*")):
                    day = folder.rsplit("/", 2)[-2].removeprefix("date=")
                    self._recover(folder)
                    if day == SEED_DATE or not day < cutoff:
                        continue
                    done = self._compact_partition(folder, table)
                    if done is not None:
                        partitions += 1
                        files_merged += done[0]
                        rows += done[1]
                        bytes_before += done[2]
                        bytes_after += done[3]
        except WfError:
            raise
        except (OSError, pyarrow.ArrowException) as exc:
            raise TelemetryError(
                TELEMETRY_WRITE_FAILED,
                f"telemetry compaction under {masked_url(self.url)} failed: {os_reason(exc)}",
                reason=os_reason(exc),
            ) from exc
        return CompactionResult(partitions, files_merged, rows, bytes_before, bytes_after)

    def _compact_partition(self, folder: str, table: str) -> tuple[int, int, int, int] | None:
        sources = sorted(self.fs.glob(f"{folder}/*.parquet"))
        if len(sources) < 2:
            return None
        merged = pyarrow.concat_tables([self._read_file(path, table) for path in sources])
        merged = merged.take(pc.sort_indices(merged, sort_keys=[(PARTITIONS[table][0], "ascending")]))
        size_before = sum(self.fs.size(path) for path in sources)
        name = f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex}-c.parquet"
        temp = f"{folder}/.{name}.tmp"
        buffer = io.BytesIO()
        pq.write_table(merged, buffer, **_parquet_options(table))
        self.fs.pipe_file(temp, buffer.getvalue())
        journal = {
            "merged": name,
            "temp": temp.rsplit("/", 1)[-1],
            "sources": [p.rsplit("/", 1)[-1] for p in sources],
        }
        self.fs.pipe_file(f"{folder}/{_JOURNAL}", json.dumps(journal).encode())
        with self.read_lock(exclusive=True):
            self.fs.mv(temp, f"{folder}/{name}")
            for path in sources:
                self.fs.rm(path)
        self.fs.rm(f"{folder}/{_JOURNAL}")
        return len(sources), merged.num_rows, size_before, len(buffer.getvalue())

    def _recover(self, folder: str) -> None:
        path = f"{folder}/{_JOURNAL}"
        if not self.fs.exists(path):
            return
        journal: dict[str, Any] = json.loads(self.fs.cat_file(path))
        with self.read_lock(exclusive=True):
            if self.fs.exists(f"{folder}/{journal['merged']}"):
                for name in journal["sources"]:
                    if self.fs.exists(f"{folder}/{name}"):
                        self.fs.rm(f"{folder}/{name}")
            elif self.fs.exists(f"{folder}/{journal['temp']}"):
                self.fs.rm(f"{folder}/{journal['temp']}")
        self.fs.rm(path)


def _scrubbed(batch: pyarrow.Table) -> pyarrow.Table:
    """``batch`` with every string cell passed through the log-sink filter (`scrub`).

    Rows carry ids, digests, codes and outcomes by design; this is the second line that
    keeps a secret-shaped value out of the Parquet files should one reach a cell.
    """
    for index, name in enumerate(batch.column_names):
        column = batch.column(index)
        if not (pyarrow.types.is_string(column.type) or pyarrow.types.is_large_string(column.type)):
            continue
        values = column.to_pylist()
        cleaned = [None if v is None else scrub(v) for v in values]
        if cleaned != values:
            batch = batch.set_column(index, name, pyarrow.array(cleaned, type=column.type))
    return batch


def _as_date(value: dt.date | str) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise TelemetryError(
            TELEMETRY_BAD_ARGUMENTS, f"date {value!r} is not YYYY-MM-DD", value=str(value)
        ) from None


def _partitions(
    batch: pyarrow.Table, time_column: str = "ts_ms", part_column: str = "workflow_id"
) -> Iterator[tuple[tuple[str, str], pyarrow.Table]]:
    """(UTC day, workflow id or event) -> the rows of ``batch`` in that partition."""
    # Whole days since the epoch by integer division: times are UTC ms and days have no leap
    # seconds in Unix time (POSIX.1 section 4.16), so this is the UTC calendar day.
    days = batch.column(time_column).cast(pyarrow.int64()).to_numpy() // _DAY_MS
    bounds = pc.min_max(batch.column(part_column))
    if days.min() == days.max() and bounds["min"] == bounds["max"]:
        # One partition (every flush of one step, and each synthetic chunk): no reordering.
        yield (_day_name(int(days[0])), bounds["min"].as_py()), batch
        return
    workflows = pc.dictionary_encode(batch.column(part_column)).combine_chunks()
    width = len(workflows.dictionary)
    codes = (days - days.min()) * width + workflows.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    ordered = batch.take(pyarrow.array(order))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], sorted_codes.size]
    for start, end in zip(starts, ends):
        day_offset, workflow_code = divmod(int(sorted_codes[start]), width)
        workflow = workflows.dictionary[workflow_code].as_py()
        yield (_day_name(int(days.min()) + day_offset), workflow), ordered.slice(int(start), int(end - start))


def _day_name(epoch_day: int) -> str:
    return (_EPOCH + dt.timedelta(days=epoch_day)).isoformat()


def per_process_url(url: str) -> bool:
    """Whether the telemetry store at ``url`` lives in this process's memory (fsspec's ``memory://``).

    Rows written there are gone when the process ends and are never seen by another process
    (a later ``wf telemetry query``, an out-of-process executor's steps).

    Args:
        url: a telemetry URL (``settings.telemetry_url``).

    Returns:
        True when fsspec's filesystem for ``url`` is (a subclass of) its ``MemoryFileSystem``;
        False otherwise, an unknown protocol included. Raises nothing.
    """
    try:
        cls = fsspec.get_filesystem_class(fsspec.utils.get_protocol(url))
    except (ValueError, ImportError):
        return False
    return issubclass(cls, MemoryFileSystem)


def seed_archive(location: str) -> None:
    """Write the record archive's zero-row threads file when missing, so ``archived_threads`` resolves.

    Args:
        location: the archive root (``wf_archive``): a local path or an fsspec URL.

    The file (`wf_pipeline.metadata.archive.ARCHIVE_SEED_NAME`, the archived threads'
    schema) appears whole: a local file is renamed into place, an object store gets one put.
    Raises ``TELEMETRY_WRITE_FAILED`` (figure: the OS reason) when it cannot be written.
    """
    fs, root = fsspec.core.url_to_fs(location)
    folder = f"{root.rstrip('/')}/{MARKER_TABLE}"
    final = f"{folder}/{ARCHIVE_SEED_NAME}"
    try:
        if fs.exists(final):
            return
        buffer = io.BytesIO()
        pq.write_table(archive_schema(MARKER_TABLE).empty_table(), buffer)
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(folder, exist_ok=True)
            temp = f"{folder}/.{ARCHIVE_SEED_NAME}.{uuid.uuid4().hex}.tmp"
            fs.pipe_file(temp, buffer.getvalue())
            fs.mv(temp, final)
        else:
            fs.pipe_file(final, buffer.getvalue())
    except (OSError, pyarrow.ArrowException) as exc:
        raise TelemetryError(
            TELEMETRY_WRITE_FAILED,
            f"cannot seed the record archive at {masked_url(location)}: {os_reason(exc)}",
            reason=os_reason(exc),
        ) from exc
