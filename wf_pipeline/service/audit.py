"""Audit trail use cases: list the events, verify the hash chain, export the trail to Parquet.

Called by ``wf audit list|verify|export``. Each opens the record store of ``settings``,
does one thing and returns JSON-ready values: ids, digests, codes, counts and times (Unix
epoch ms), never a payload (`wf_pipeline.security.audit`).

The Parquet copy (the ``audit_events`` telemetry table, queried with ``wf telemetry
query``) is written by `export_audit_events`, which appends the events after the copy's
newest one. `verify_audit` uses that newest exported event as a witness of the trail's
head: an event cut off the end of the database's trail is then reported too, and checks
each event's seal with the home's audit key (`wf_pipeline.security.audit_key.audit_key`)
when it has one.
"""

from __future__ import annotations

from typing import Any

import pyarrow

from wf_pipeline.errors import (
    AUDIT_CHAIN_BROKEN,
    GRANT_MALFORMED,
    TELEMETRY_FILE_UNREADABLE,
    SecurityError,
    WfError,
)
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.metadata.records import now_ms as current_ms
from wf_pipeline.records import open_settings_record_store
from wf_pipeline.security.audit import ChainReport, audit_events, verify_audit_chain
from wf_pipeline.security.audit_key import audit_key
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.audit import audit_events_table, exported_audit_head
from wf_pipeline.telemetry.schema import AUDIT_EVENTS
from wf_pipeline.telemetry.store import TelemetryStore

log = product_logger(__name__)

#: Events read from the record store and written to Parquet per file by `export_audit_events`.
EXPORT_PAGE = 10_000
#: Positions a broken chain's message names at most; the details list every problem.
MESSAGE_POSITIONS = 20


def list_audit(
    settings: Settings,
    *,
    since: str = "forever",
    grant_id: str | None = None,
    limit: int | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The audit events since ``since`` ago, oldest first.

    Args:
        settings: whose record store holds the trail.
        since: how far back, e.g. ``12h``, ``7d``, or ``forever`` (every event).
        grant_id: only the events of this grant.
        limit: at most this many events (the oldest of the range), or None for all.
        now_ms: the end of the range (Unix epoch ms; default now).

    Returns:
        ``{"since", "since_ms" (None for forever), "events": [AuditEvent.to_dict(), ...]}``.

    Raises:
        MetadataError: ``METADATA_BAD_DURATION`` (``since`` is no duration).
        SecurityError: ``GRANT_MALFORMED`` (``grant_id`` is not UTF-8 text).
        RecordError: ``RECORD_*`` from the store.
    """
    if grant_id is not None and not _utf8(grant_id):
        # Undecodable command-line bytes come as lone surrogates no store can encode.
        raise SecurityError(GRANT_MALFORMED, "the grant id is not UTF-8 text; no grant can have it")
    window_ms = parse_duration_ms(since)
    since_ms = None if window_ms is None else (current_ms() if now_ms is None else now_ms) - window_ms
    with open_settings_record_store(settings) as records:
        events = audit_events(records, since_ms=since_ms, grant_id=grant_id, limit=limit)
    return {"since": since, "since_ms": since_ms, "events": [event.to_dict() for event in events]}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def verify_audit(settings: Settings) -> dict[str, Any]:
    """Verify the whole hash chain and its seals (`verify_audit_chain`), witnessed by the Parquet copy's head.

    Seals are checked with the home's audit key (WF_AUDIT_KEY, WF_AUDIT_KEY_FILE or
    ``<home>/keys/audit.key``); a home without one makes none here, and reports that seals
    were not checked.

    Args:
        settings: whose record store holds the trail (and whose telemetry the copy), and
            whose audit key checks the seals.

    Returns:
        The `ChainReport` as a dict (``ok`` True, ``events``, ``head_seq``, ``head_hash``,
        ``sealed_checked`` (False: no audit key), ``key_id`` (the key's id, or None),
        ``unsealed`` (events without a seal: only without a key can the trail verify
        with any), ``problems`` empty) plus ``witness``: ``{"seq", "event_hash"}`` of the newest
        exported event, or None (nothing exported, telemetry off or unreadable), and
        ``witness_error``: ``{"code", "message"}`` when the Parquet copy could not be read
        (e.g. ``TELEMETRY_FILE_UNREADABLE``: the head check was skipped), else None.

    Raises:
        SecurityError: ``AUDIT_CHAIN_BROKEN`` when any event was deleted, altered (its
            seal missing or wrong included) or reordered: the message names the positions
            per kind; ``details`` carry ``problems`` (each ``{"seq", "kind", "count",
            "detail"}``), ``events``, ``head_seq``, ``sealed_checked``. ``AUDIT_KEY_INVALID``
            when the configured audit key is set twice, unreadable or malformed.
        RecordError: ``RECORD_*`` from the store.
    """
    key = audit_key(settings)
    witness, witness_error = _witness(settings)
    with open_settings_record_store(settings) as records:
        report = verify_audit_chain(records, key=key, witness=witness)
    result = report.to_dict() | {
        "witness": None if witness is None else {"seq": witness[0], "event_hash": witness[1]},
        "witness_error": witness_error,
    }
    if not report.ok:
        raise SecurityError(
            AUDIT_CHAIN_BROKEN,
            f"the audit trail of {report.events} events does not verify: {_positions(report)}",
            problems=result["problems"],
            events=report.events,
            head_seq=report.head_seq,
            sealed_checked=report.sealed_checked,
        )
    return result


def _positions(report: ChainReport) -> str:
    parts = []
    for kind in ("deleted", "altered", "reordered"):
        seqs = report.positions(kind)
        if seqs:
            shown = ", ".join(map(str, seqs[:MESSAGE_POSITIONS]))
            more = f" and {len(seqs) - MESSAGE_POSITIONS} more" if len(seqs) > MESSAGE_POSITIONS else ""
            parts.append(f"{kind} at {shown}{more}")
    return "; ".join(parts)


def _witness(settings: Settings) -> tuple[tuple[int, str] | None, dict[str, str] | None]:
    # The copy is optional (telemetry may be off, or its store elsewhere and down): without
    # it the chain is still verified, and the result says why no witness was used, so a
    # damaged copy is never mistaken for an empty one.
    if not settings.telemetry:
        return None, None
    try:
        return exported_audit_head(TelemetryStore(settings.telemetry_url)), None
    except WfError as exc:
        return None, {"code": exc.code, "message": exc.message}
    except (OSError, pyarrow.ArrowException) as exc:
        return None, {
            "code": TELEMETRY_FILE_UNREADABLE,
            "message": f"the audit_events copy cannot be read: {type(exc).__name__}",
        }


def export_audit_events(settings: Settings, *, page: int = EXPORT_PAGE) -> dict[str, Any]:
    """Append the audit events the Parquet copy does not hold yet (seq after its newest) to it.

    Runs under the telemetry store's exclusive lock (on a local disk), so two exports never
    write the same event twice and a query sees whole pages; one file per (day, outcome)
    per page of ``page`` events.

    Args:
        settings: whose record store holds the trail and whose telemetry gets the copy.
        page: events per read and per write (a positive int).

    Returns:
        ``{"exported": events written, "after_seq": the copy's newest seq before (0: none),
        "head_seq": its newest now, "telemetry": the store's location}``; with telemetry
        off (``WF_TELEMETRY=0``) nothing is written and ``exported`` is 0.

    Raises:
        TelemetryError: ``TELEMETRY_WRITE_FAILED`` (pages before the failing one stay written;
            the next export continues after them), ``TELEMETRY_SCHEMA_INVALID``.
        RecordError: ``RECORD_*`` from the store.
    """
    if not settings.telemetry:
        return {"exported": 0, "after_seq": 0, "head_seq": 0, "telemetry": None}
    store = TelemetryStore(settings.telemetry_url)
    store.ensure_seeded()
    exported = 0
    with open_settings_record_store(settings) as records, store.read_lock(exclusive=True):
        head = _exported_head_unlocked(store)
        after = start = 0 if head is None else head[0]
        while True:
            batch = [
                event for event in records.audit_records(after_seq=after, limit=page) if event.seq > after
            ]
            if not batch:
                break
            exported += store.write(AUDIT_EVENTS, audit_events_table(batch))
            after = batch[-1].seq
    return {"exported": exported, "after_seq": start, "head_seq": after, "telemetry": store.location}


def _exported_head_unlocked(store: TelemetryStore) -> tuple[int, str] | None:
    # `exported_audit_head` takes the shared lock, which this process's exclusive lock on the
    # same file would wait for; inside the export the exclusive lock already covers the read.
    return exported_audit_head(store, locked=False)


def copy_trail_to_telemetry(settings: Settings) -> None:
    """Copy new audit events to Parquet (`export_audit_events`) after a decision, never failing it.

    The event is committed in the record store, the trail of record; its Parquet copy follows
    at once so `wf telemetry query` sees it. A copy that fails (a damaged Parquet file, a full
    disk, a bug) is logged by code or type and left to the next export: it does not undo a
    read or a revocation already decided.

    Raises nothing.
    """
    try:
        export_audit_events(settings)
    except WfError as exc:
        log.warning("audit events not copied to telemetry yet: %s", exc.code)
    except Exception as exc:  # noqa: BLE001 - a copy is best effort; the record store holds the event
        log.warning("audit events not copied to telemetry yet: %s", type(exc).__name__)
