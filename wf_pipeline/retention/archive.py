"""The record archive: rows of old threads, moved out of the record store into Parquet.

Layout under the archive root (``$WF_HOME/archive``, `wf_pipeline.telemetry.query.archive_location`)::

    <root>/<table>/<compaction_id>.parquet     table: threads, turns, gates, prompt_links,
                                               artifact_links, frames

One file per table per compaction run; rows follow `wf_pipeline.metadata.archive`. A file is written under a hidden temporary name, fsynced, then renamed
(POSIX rename is atomic), so a reader such as DuckDB's ``<table>/*.parquet`` glob sees a
whole file or none. The ``threads`` file of a run is written last: it marks the run
complete, and `RecordArchive.discard_incomplete` removes the other files of a run that
has none (a run killed half-way), before a new run writes anything.

Nothing here deletes records: the caller deletes them once `RecordArchive.write` has
returned, i.e. once every file is durable.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from wf_pipeline.errors import RETENTION_ARCHIVE_ERROR, RetentionError, os_reason
from wf_pipeline.metadata.archive import (
    ARCHIVE_MODELS,
    MARKER_TABLE,
    archive_row,
    archive_schema,
    record_of_row,
)
from wf_pipeline.records.protocol import (
    ARTIFACT_LIST_COLUMN,
    ARTIFACT_REFERENCE_COLUMNS,
    PINNED_PROFILE_COLUMN,
)

_SUFFIX = ".parquet"


@dataclass(frozen=True)
class ArchiveFile:
    """One Parquet file a compaction run wrote.

    Attributes:
        table: the archived table (``threads``, ``turns``...).
        path: the file's path.
        rows: rows in it.
        bytes: its size in bytes.
    """

    table: str
    path: Path
    rows: int
    bytes: int


class RecordArchive:
    """The Parquet archive of thread records under one root folder (see the module docstring).

    Args:
        root: the archive folder; created on first write.

    Raises ``RETENTION_ARCHIVE_ERROR`` (figures: path, the operating system's reason) when
    a file cannot be read or written.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def files(self, table: str) -> list[Path]:
        """Complete Parquet files of ``table``, in name order (temporary files are not listed)."""
        folder = self.root / table
        if not folder.is_dir():
            return []
        # Hidden names are files being written; "_" names are seeds (`ARCHIVE_SEED_NAME`), no rows.
        return sorted(
            p for p in folder.iterdir() if p.name.endswith(_SUFFIX) and not p.name.startswith((".", "_"))
        )

    def read_columns(
        self, table: str, columns: Sequence[str], *, optional: bool = False
    ) -> Iterator[dict[str, list[Any]]]:
        """The named columns of ``table``, one ``{column: values}`` dict per complete file, in file order.

        Only those columns are read from each Parquet file (pyarrow's column projection).
        With ``optional``, a file without some of them (written before they existed) gives
        only those it has. Raises ``RETENTION_ARCHIVE_ERROR`` (figures: path) when a file
        cannot be read.
        """
        for path in self.files(table):
            try:
                wanted = list(columns)
                if optional:
                    present = set(pq.read_schema(path).names)
                    wanted = [column for column in wanted if column in present]
                yield pq.read_table(path, columns=wanted).to_pydict()
            except (OSError, pa.ArrowException) as exc:
                raise RetentionError(
                    RETENTION_ARCHIVE_ERROR,
                    f"cannot read archive file {path}: {os_reason(exc)}",
                    path=str(path),
                ) from exc

    def archived_threads(self) -> dict[str, int]:
        """thread_id -> the ``updated_at_ms`` it was archived with (the latest, if archived twice)."""
        found: dict[str, int] = {}
        for columns in self.read_columns(MARKER_TABLE, ("thread_id", "updated_at_ms")):
            for thread_id, updated in zip(columns["thread_id"], columns["updated_at_ms"], strict=True):
                found[thread_id] = max(updated, found.get(thread_id, updated))
        return found

    def thread_records(self, thread_id: str) -> ArchivedThread | None:
        """The archived rows of one thread as records; None when it was never archived.

        Each table's files are read with a row filter on ``thread_id`` (pyarrow), so only
        that thread's rows are built. A thread archived twice shows the rows of its
        latest compaction run.

        Raises ``RETENTION_ARCHIVE_ERROR`` (figures: path) when a file cannot be read.
        """
        marker = self._rows(MARKER_TABLE, thread_id)
        if not marker:
            return None
        latest = max(marker, key=lambda row: row["archived_at_ms"])
        compaction_id = latest["compaction_id"]

        def records(table: str) -> list[Any]:
            rows = marker if table == MARKER_TABLE else self._rows(table, thread_id)
            return [record_of_row(table, row) for row in rows if row["compaction_id"] == compaction_id]

        return ArchivedThread(
            thread=records(MARKER_TABLE)[0],
            # The record store's listing orders (`wf_pipeline.records.protocol`).
            turns=sorted(records("turns"), key=lambda t: (t.turn_seq, t.attempt, t.turn_id)),
            gates=sorted(records("gates"), key=lambda g: (g.evaluated_at_ms, g.attempt, g.gate_record_id)),
            prompt_links=records("prompt_links"),
            artifact_links=sorted(
                records("artifact_links"), key=lambda a: (a.created_at_ms, a.attempt, a.artifact_link_id)
            ),
            compaction_id=compaction_id,
            archived_at_ms=int(latest["archived_at_ms"]),
        )

    def _rows(self, table: str, thread_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for path in self.files(table):
            try:
                found = pq.read_table(path, filters=[("thread_id", "=", thread_id)])
            except (OSError, pa.ArrowException) as exc:
                raise RetentionError(
                    RETENTION_ARCHIVE_ERROR,
                    f"cannot read archive file {path}: {os_reason(exc)}",
                    path=str(path),
                ) from exc
            rows.extend(found.to_pylist())
        return rows

    def referenced_artifact_ids(self) -> set[str]:
        """Every artifact id an archived row refers to, through the same columns as the record store's.

        Archived threads keep their CAS objects: the orphan sweep counts these ids as
        referenced, so an object of an archived thread goes only by a retention window. The
        pinned profile snapshot of a thread counts too; archive files written before threads
        pinned one have no such column and refer to none.
        """
        found: set[str] = set()
        for table, column in ARTIFACT_REFERENCE_COLUMNS:
            for columns in self.read_columns(table, (column,)):
                found.update(value for value in columns[column] if value)
        pinned_table, pinned_column = PINNED_PROFILE_COLUMN
        for columns in self.read_columns(pinned_table, (pinned_column,), optional=True):
            found.update(value for value in columns.get(pinned_column, ()) if value)
        list_table, list_column = ARTIFACT_LIST_COLUMN
        for columns in self.read_columns(list_table, (list_column,)):
            for text in columns[list_column]:
                found.update(json_id_list(text))
        return found

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's sweep lock (``<root>/.lock``, flock): one destructive sweep at a time.

        Compaction (archive and orphan sweep) and ``wf retention apply`` (CLI or Dagster job)
        both take it, so two sweeps never plan the same deletions and each deletion is
        counted, tombstoned and emitted once, by the process that did it; a second sweep
        waits, then plans against the first one's tombstones. flock serializes processes
        on one machine (a shared POSIX or NFSv4 home); sweeps of one record store from
        several homes are not serialized by it.

        The lock goes with the process, so a killed run never leaves the archive locked.
        Raises ``RETENTION_ARCHIVE_ERROR`` when the lock file cannot be opened.
        """
        with self._io("lock", self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def discard_incomplete(self) -> int:
        """Remove what a killed run left: temporary files, and files of runs without a threads file.

        Their rows are still in the record store (it is cleared only after a complete
        write), so nothing is lost. Call under `locked`. Returns the number of files removed.
        """
        complete = {p.name for p in self.files(MARKER_TABLE)}
        removed = 0
        for table in ARCHIVE_MODELS:
            folder = self.root / table
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
                orphaned = (
                    path.name.endswith(_SUFFIX)
                    and not path.name.startswith("_")
                    and table != MARKER_TABLE
                    and path.name not in complete
                )
                if stale_tmp or orphaned:
                    with self._io("remove", path):
                        path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def write(
        self, compaction_id: str, rows: Mapping[str, Sequence[BaseModel]], *, archived_at_ms: int
    ) -> list[ArchiveFile]:
        """Write one run's rows, one durable file per table, the threads file last.

        Args:
            compaction_id: names the files (``<table>/<compaction_id>.parquet``).
            rows: table -> its records; every table of `ARCHIVE_MODELS` gets a file, empty
                or not, so each glob always matches a file with the full schema.
            archived_at_ms: stamped on every row (epoch ms).

        Returns:
            The files written, in write order. Nothing is written when ``rows["threads"]``
            is empty.

        Raises ``RETENTION_ARCHIVE_ERROR``; a file that failed is left only under its
        temporary name, which `discard_incomplete` removes.
        """
        if not rows.get(MARKER_TABLE):
            return []
        written = []
        for table in ARCHIVE_MODELS:
            data = [
                archive_row(record, archived_at_ms=archived_at_ms, compaction_id=compaction_id)
                for record in rows.get(table, ())
            ]
            arrow = pa.Table.from_pylist(data, schema=archive_schema(table))
            written.append(self._publish(table, f"{compaction_id}{_SUFFIX}", arrow))
        return written

    def _publish(self, table: str, name: str, arrow: pa.Table) -> ArchiveFile:
        folder = self.root / table
        final = folder / name
        tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        with self._io("write", final):
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow, tmp, compression="zstd")
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(folder)  # the rename itself survives a power loss
        return ArchiveFile(table=table, path=final, rows=arrow.num_rows, bytes=final.stat().st_size)

    @contextmanager
    def _io(self, action: str, path: Path) -> Iterator[None]:
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            raise RetentionError(
                RETENTION_ARCHIVE_ERROR,
                f"cannot {action} archive file {path}: {os_reason(exc)}",
                path=str(path),
                action=action,
            ) from exc


@dataclass(frozen=True)
class ArchivedThread:
    """One archived thread's records, as `RecordArchive.thread_records` read them back.

    Attributes:
        thread: its `ThreadRecord`.
        turns: its `TurnRecord` rows, in seq then attempt order.
        gates: its `GateRecord` rows.
        prompt_links: its `PromptLinkRecord` rows.
        artifact_links: its `ArtifactLinkRecord` rows.
        compaction_id: the compaction run that archived it.
        archived_at_ms: when (Unix epoch, ms).
    """

    thread: Any
    turns: list[Any]
    gates: list[Any]
    prompt_links: list[Any]
    artifact_links: list[Any]
    compaction_id: str
    archived_at_ms: int


def json_id_list(text: str | None) -> list[str]:
    """The ids of an archived list column (``turns.input_artifact_ids``: canonical JSON text); [] for empty."""
    if not text:
        return []
    value = json.loads(text)
    return [item for item in value if isinstance(item, str)]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
