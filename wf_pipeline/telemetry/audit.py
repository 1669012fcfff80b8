"""The Parquet copy of the audit trail: `AuditEventRecord` s as ``audit_events`` rows, and the copy's head.

The record store keeps the trail (`wf_pipeline.security.audit`); this copy makes it
queryable with ``wf telemetry query`` and, kept apart from the database, witnesses the
trail's head, so events cut off the end of the database's trail are noticed.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow
import pyarrow.compute as pc

from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.records import AuditEventRecord
from wf_pipeline.telemetry.schema import AUDIT_EVENT_COLUMNS, AUDIT_EVENTS
from wf_pipeline.telemetry.store import TelemetryStore

__all__ = ["audit_events_table", "exported_audit_head"]


def audit_events_table(events: Iterable[AuditEventRecord]) -> pyarrow.Table:
    """The ``audit_events`` rows of ``events`` (`AUDIT_EVENT_COLUMNS`), in the order given.

    ``at_ms`` becomes the ``event_at`` timestamp (ms, UTC); ``scope`` and ``artifact_ids``
    their canonical JSON text, as the record store keeps them. Checked when written
    (`TelemetryStore.write`). Raises nothing.
    """
    rows = [
        (
            event.at_ms,
            event.seq,
            event.event_id,
            event.requester,
            event.grant_id,
            event.reason_code,
            canonical_json(event.scope).decode("utf-8"),
            canonical_json(list(event.artifact_ids)).decode("utf-8"),
            event.outcome,
            event.code,
            event.bytes,
            event.policy_version,
            event.prev_hash,
            event.event_hash,
        )
        for event in events
    ]
    columns = list(zip(*rows)) if rows else [()] * len(AUDIT_EVENT_COLUMNS)
    arrays = [
        pyarrow.array(values, type=kind) for (kind, _), values in zip(AUDIT_EVENT_COLUMNS.values(), columns)
    ]
    return pyarrow.Table.from_arrays(arrays, names=list(AUDIT_EVENT_COLUMNS))


def exported_audit_head(store: TelemetryStore, *, locked: bool = True) -> tuple[int, str] | None:
    """(seq, event_hash) of the newest exported audit event, or None when none was exported.

    Reads only those two columns of each ``audit_events`` file, under the store's shared
    lock (``locked=False``: the caller holds the exclusive one). Raises
    ``TELEMETRY_FILE_UNREADABLE`` (figure: the file) when a file cannot be read.
    """
    if locked:
        with store.read_lock():
            return exported_audit_head(store, locked=False)
    best: tuple[int, str] | None = None
    for path in store.files(AUDIT_EVENTS):
        part = store.read_file(path, AUDIT_EVENTS, columns=["seq", "event_hash"])
        if part.num_rows == 0:
            continue
        at = pc.index(part.column("seq"), pc.max(part.column("seq"))).as_py()
        seq, event_hash = part.column("seq")[at].as_py(), part.column("event_hash")[at].as_py()
        if best is None or seq > best[0]:
            best = (seq, event_hash)
    return best
