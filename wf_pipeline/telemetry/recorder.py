"""Telemetry rows buffered in memory while turns run, flushed as Parquet at the end of a step.

A turn records a row with one tuple append (no I/O, no validation), so recording costs
next to nothing inside turns; `TelemetryRecorder.flush` turns the buffer into one Arrow
table per telemetry table and hands it to `TelemetryStore.write`, which validates it and
writes one file per (day, workflow) partition, never one file per row.

With ``WF_TELEMETRY=0`` the runtime gets a `DisabledTelemetryRecorder`, whose methods do
nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Protocol

import pyarrow

from wf_pipeline.errors import WfError
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.schema import (
    ARTIFACT_WRITES,
    COLUMNS,
    KEY_EVENT_COLUMNS,
    KEY_EVENTS,
    METADATA_WRITES,
    TABLES,
)
from wf_pipeline.telemetry.store import TelemetryStore

__all__ = [
    "ARTIFACT_DOMAIN",
    "DisabledTelemetryRecorder",
    "Recorder",
    "TelemetryRecorder",
    "open_recorder",
]

logger = product_logger(__name__)

#: The ``domain`` of every ``artifact_writes`` row.
ARTIFACT_DOMAIN = "cas"

_Row = tuple[object, ...]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Recorder(Protocol):
    """What the runtime records telemetry through (`TelemetryRecorder` or `DisabledTelemetryRecorder`)."""

    enabled: bool

    def metadata_write(self, **row: Any) -> None:
        """Buffer one ``metadata_writes`` row (see `TelemetryRecorder.metadata_write`)."""

    def artifact_event(self, **row: Any) -> None:
        """Buffer one ``artifact_writes`` row (see `TelemetryRecorder.artifact_event`)."""

    def key_event(self, **row: Any) -> None:
        """Buffer one ``key_events`` row (see `TelemetryRecorder.key_event`)."""

    def flush(self, run_id: str | None = None) -> int:
        """Write the buffer; rows written (see `TelemetryRecorder.flush`)."""
        ...

    def flush_safely(self, run_id: str | None = None) -> int:
        """Write the buffer, logging a failure instead of raising; rows written."""
        ...

    @property
    def pending(self) -> int:
        """Rows buffered."""
        ...


class TelemetryRecorder:
    """Buffers telemetry rows of many threads and writes them to a `TelemetryStore` on `flush`.

    Args:
        store: where `flush` writes.

    Thread-safe: the turns of a batch run in threads and record concurrently; `flush`
    takes the buffer under a lock, so a row is written once, by one flush.
    """

    enabled = True

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._rows: dict[str, list[_Row]] = {table: [] for table in TABLES}
        self._warned: set[str] = set()

    def metadata_write(
        self,
        *,
        workflow_id: str,
        profile_version: str | None,
        thread_id: str | None,
        turn_id: str | None,
        node_id: str | None,
        frame_id: str | None,
        domain: str,
        key: str,
        mutability_class: str | None,
        bytes: int,
        budget_bytes: int | None,
        outcome: str,
        error_code: str | None = None,
        run_id: str | None = None,
        ts_ms: int | None = None,
        branch: str | None = None,
    ) -> None:
        """Buffer one ``metadata_writes`` row: a frame-metadata key written or rejected.

        Args mirror the columns (`wf_pipeline.telemetry.schema`): ``bytes`` is the value's
        UTF-8 size, ``budget_bytes`` its key's budget (bytes), ``outcome`` ``accepted`` or
        ``rejected`` (then ``error_code`` is the rejection's code); ``ts_ms`` defaults to
        now (ms since the epoch, UTC); ``branch`` is ``taken``/``not_taken`` for a turn
        that declares ``when:``, else None. Checked only at `flush`. Raises nothing.
        """
        row = (
            _now_ms() if ts_ms is None else ts_ms,
            workflow_id,
            profile_version,
            thread_id,
            turn_id,
            node_id,
            frame_id,
            domain,
            key,
            mutability_class,
            bytes,
            budget_bytes,
            outcome,
            error_code,
            run_id,
            branch,
        )
        with self._lock:
            self._rows[METADATA_WRITES].append(row)

    def artifact_event(
        self,
        *,
        workflow_id: str,
        profile_version: str | None,
        thread_id: str | None,
        turn_id: str | None,
        node_id: str | None,
        frame_id: str | None,
        artifact_class: str,
        bytes: int,
        outcome: str,
        error_code: str | None = None,
        run_id: str | None = None,
        budget_bytes: int | None = None,
        ts_ms: int | None = None,
        branch: str | None = None,
    ) -> None:
        """Buffer one ``artifact_writes`` row: an artifact put (``accepted``), ``deleted`` or ``expired``.

        ``key`` is ``artifact_class`` (``prompt_render``, ``context_payload``, ``output``...),
        ``domain`` is ``cas``, ``bytes`` the artifact's size; ``branch`` is ``taken`` for
        an attempt of a turn whose ``when:`` held, else None; other args mirror the columns.
        Raises nothing.
        """
        row = (
            _now_ms() if ts_ms is None else ts_ms,
            workflow_id,
            profile_version,
            thread_id,
            turn_id,
            node_id,
            frame_id,
            ARTIFACT_DOMAIN,
            artifact_class,
            None,
            bytes,
            budget_bytes,
            outcome,
            error_code,
            run_id,
            branch,
        )
        with self._lock:
            self._rows[ARTIFACT_WRITES].append(row)

    def key_event(
        self,
        *,
        event: str,
        kek_id: str | None = None,
        artifact_class: str | None = None,
        period_start_ms: int | None = None,
        manager: str | None = None,
        state: str | None = None,
        data_keys: int | None = None,
        elapsed_ms: int | None = None,
        outcome: str = "ok",
        error_code: str | None = None,
        ts_ms: int | None = None,
    ) -> None:
        """Buffer one ``key_events`` row: a key lifecycle event (`wf_pipeline.telemetry.schema.KEY_EVENT_COLUMNS`).

        Args:
            event: ``create``, ``rotate``, ``rewrap``, ``retire`` or ``destroy``.
            kek_id, artifact_class, manager, state: the KEK the event is about and its state
                after it (None for a rewrap, which spans lineages).
            period_start_ms: the start of the KEK's lineage period (Unix epoch ms, UTC);
                stored as its UTC date.
            data_keys: data keys affected (moved, shredded); elapsed_ms: wall time in ms.
            outcome: ``ok`` or ``failed`` (then ``error_code`` is the failure's code).
            ts_ms: when (Unix epoch ms, UTC); default now.

        Ids, states, counts and times only: there is no column for key material. Checked
        only at `flush`. Raises nothing.
        """
        row = (
            _now_ms() if ts_ms is None else ts_ms,
            event,
            kek_id,
            artifact_class,
            None if period_start_ms is None else _utc_date(period_start_ms),
            manager,
            state,
            data_keys,
            elapsed_ms,
            outcome,
            error_code,
        )
        with self._lock:
            self._rows[KEY_EVENTS].append(row)

    @property
    def pending(self) -> int:
        """Rows buffered and not flushed yet."""
        with self._lock:
            return sum(len(rows) for rows in self._rows.values())

    def flush(self, run_id: str | None = None) -> int:
        """Write the buffered rows (one Parquet file per table and partition) and empty the buffer.

        Args:
            run_id: the Dagster run of the step being flushed; fills the rows recorded
                without a run id (turns do not know their run; the step does).

        Returns:
            Rows written (0 when the buffer was empty: then nothing is written).

        Raises:
            TelemetryError: ``TELEMETRY_SCHEMA_INVALID`` (a row of a bad shape: nothing of
                that table's batch is written) or ``TELEMETRY_WRITE_FAILED``. The buffer is
                emptied either way: the rows are dropped, not written twice later.
        """
        with self._lock:
            taken, self._rows = self._rows, {table: [] for table in TABLES}
        written = 0
        for table, rows in taken.items():
            if rows:
                written += self.store.write(table, _to_table(rows, run_id, table))
        return written

    def flush_safely(self, run_id: str | None = None) -> int:
        """`flush`, but a telemetry failure is logged (its code, once per code) instead of raised.

        Telemetry observes runs; it must never fail the turn or step it measures, and
        keeping rows that failed to write would grow the buffer for as long as the store is
        broken, so they are dropped and the warning says how many.

        Returns:
            Rows written (0 after a failure).
        """
        pending = self.pending
        try:
            return self.flush(run_id)
        except (WfError, OSError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            if code not in self._warned:
                self._warned.add(code)
                logger.warning("telemetry flush dropped %d rows: %s", pending, exc)
            return 0


def record_kek_event(
    recorder: Recorder,
    event: str,
    kek: KekRecord | None,
    *,
    data_keys: int | None = None,
    elapsed_ms: int | None = None,
    error_code: str | None = None,
) -> None:
    """Buffer the ``key_events`` row of one lifecycle event of ``kek``: ids, lineage, state and counts only.

    The one place a `KekRecord` becomes a row (its ``key_ref`` never does), for the key
    commands and for KEKs the runtime or a retention sweep makes or destroys.

    Args:
        recorder: where the row goes.
        event: ``create``, ``rotate``, ``rewrap``, ``retire`` or ``destroy``.
        kek: the KEK concerned, None for an event of no single KEK.
        data_keys: data keys the event concerned; elapsed_ms: its duration in ms.
        error_code: the code of a failed event (outcome ``failed``), None when it succeeded.

    Raises nothing beyond the recorder's own checks.
    """
    recorder.key_event(
        event=event,
        kek_id=None if kek is None else kek.kek_id,
        artifact_class=None if kek is None else kek.artifact_class,
        period_start_ms=None if kek is None else kek.period_start_ms,
        manager=None if kek is None else kek.manager,
        state=None if kek is None else kek.state,
        data_keys=data_keys,
        elapsed_ms=elapsed_ms,
        outcome="ok" if error_code is None else "failed",
        error_code=error_code,
    )


class DisabledTelemetryRecorder:
    """The recorder of ``WF_TELEMETRY=0``: every method does nothing and `flush` writes 0 rows."""

    enabled = False
    pending = 0

    def metadata_write(self, **row: object) -> None:
        """Do nothing."""

    def artifact_event(self, **row: object) -> None:
        """Do nothing."""

    def key_event(self, **row: object) -> None:
        """Do nothing."""

    def flush(self, run_id: str | None = None) -> int:
        """Write nothing; returns 0."""
        return 0

    def flush_safely(self, run_id: str | None = None) -> int:
        """Write nothing; returns 0."""
        return 0


def open_recorder(settings: Settings) -> TelemetryRecorder | DisabledTelemetryRecorder:
    """The recorder ``settings`` ask for: one over ``settings.telemetry_url``, or the disabled one."""
    if not settings.telemetry:
        return DisabledTelemetryRecorder()
    return TelemetryRecorder(TelemetryStore(settings.telemetry_url))


def _utc_date(at_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC).date()


def _to_table(rows: list[_Row], run_id: str | None, table: str = METADATA_WRITES) -> pyarrow.Table:
    spec = KEY_EVENT_COLUMNS if table == KEY_EVENTS else COLUMNS
    columns = list(zip(*rows))
    if run_id is not None and table != KEY_EVENTS:
        at = list(spec).index("run_id")
        columns[at] = tuple(run_id if value is None else value for value in columns[at])
    arrays = []
    for (kind, _), values in zip(spec.values(), columns):
        try:
            arrays.append(pyarrow.array(values, type=kind))
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, TypeError, OverflowError):
            # A value of the wrong type: keep the column as strings so validation names it.
            arrays.append(
                pyarrow.array([None if v is None else repr(v) for v in values], type=pyarrow.string())
            )
    return pyarrow.Table.from_arrays(arrays, names=list(spec))
