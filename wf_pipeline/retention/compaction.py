"""Compaction: sweep orphan CAS objects and stale scratch files, archive old threads' records.

Three rules, each safe against a run writing at the same time:

- **Orphans.** A CAS object that no record and no archived record refers to
  (`referenced_artifact_ids`) and no tombstone other than an orphan one names, last put
  longer ago than the grace period, is deleted, its tombstone (reason ``orphan``) written
  first. A run puts its objects before it writes their records (CAS first), and putting
  an object again renews its age (`ArtifactStore.iter_objects`), so the grace period is
  what protects a run in flight: its objects are young. Candidates are checked twice
  (listing and references read again just before the delete), which leaves only the
  instant between that check and the delete itself.
- **Scratch.** ``tmp/*.part`` files of the CAS older than the grace period are writes that
  died between staging and rename; they are removed.
- **Archive.** Rows of threads older than their workflow's ``archive_after`` window move to
  Parquet (`wf_pipeline.retention.archive`), then leave the record store in one
  transaction. Only finished threads that are no longer current go (`archivable_threads`),
  so the next run of an unchanged tree still finds every thread it reuses. The CAS
  objects of archived threads stay: the archive refers to them, so the orphan sweep keeps
  them, and only a retention window removes them.
- **Annotations.** Each annotation key's events older than its ``fold_after`` window (key
  registry) are folded into one snapshot event per (frame, key)
  (`RecordStore.fold_annotation_events`); the materialized view does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from wf_pipeline.cas import ArtifactStore, ObjectInfo
from wf_pipeline.metadata.records import HoldRecord, ThreadRecord, TombstoneRecord
from wf_pipeline.metadata.registry import KeyRegistry
from wf_pipeline.records import RecordStore
from wf_pipeline.retention.archive import ArchiveFile, RecordArchive

ORPHAN_CLASS = "orphan"  # the tombstone's artifact_class: no record gave the object a class
ORPHAN_REASON = "orphan"
ORPHAN_POLICY = "compaction"
# Finished threads; pending and running ones are never archived.
ARCHIVABLE_STATUSES = frozenset({"completed", "failed", "aborted"})


def referenced_artifact_ids(records: RecordStore, archive: RecordArchive) -> set[str]:
    """Every artifact id a record, live or archived, refers to: CAS objects outside it are orphans.

    The record store's columns are `wf_pipeline.records.protocol.ARTIFACT_REFERENCE_COLUMNS`;
    the archive reads the same columns from its Parquet files.

    Raises ``RECORD_UNAVAILABLE``, ``RETENTION_ARCHIVE_ERROR``.
    """
    return records.referenced_artifact_ids() | archive.referenced_artifact_ids()


# --- orphans --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrphanSweep:
    """What the orphan sweep did.

    Attributes:
        scanned: CAS objects listed.
        deleted: orphans deleted (each with a tombstone).
        bytes_freed: their total size in bytes.
        kept_young: unreferenced objects kept because they were put within the grace period
            (or, at the second look, put again or recorded since the first).
        grace_ms: the grace period applied, in ms.
    """

    scanned: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    kept_young: int = 0
    grace_ms: int | None = None


def _orphan_candidates(
    objects: Iterable[ObjectInfo], referenced: set[str], *, cutoff_ms: int
) -> tuple[dict[str, ObjectInfo], int, int]:
    """(old unreferenced objects by id, objects seen, young unreferenced objects)."""
    old: dict[str, ObjectInfo] = {}
    seen = young = 0
    for info in objects:
        seen += 1
        if info.artifact_id in referenced:
            continue
        if info.modified_ms <= cutoff_ms:
            old[info.artifact_id] = info
        else:
            young += 1
    return old, seen, young


def sweep_orphans(
    cas: ArtifactStore,
    records: RecordStore,
    archive: RecordArchive,
    *,
    now_ms: int,
    grace_ms: int | None,
    on_deleted: Callable[[ObjectInfo], None] | None = None,
) -> OrphanSweep:
    """Delete the orphans last put more than ``grace_ms`` before ``now_ms``, each after its tombstone.

    Args:
        cas: the artifact store.
        records: the record store (references and tombstones).
        archive: the record archive (its references count too).
        now_ms: the time the sweep judges age against (epoch ms).
        grace_ms: how long an unreferenced object is kept after its last put (ms); None
            (``forever``) keeps every orphan.
        on_deleted: called with each object after its delete (telemetry).

    Returns:
        An `OrphanSweep`. An object whose tombstone says ``orphan`` and still exists (a
        sweep killed between tombstone and delete) is deleted again without a new
        tombstone; objects other tombstones name are retention's to finish.

    Raises ``CAS_BACKEND_ERROR``, ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``, ``RETENTION_ARCHIVE_ERROR``.
    """
    if grace_ms is None:
        scanned = sum(1 for _ in cas.iter_objects())
        return OrphanSweep(scanned=scanned, grace_ms=None)
    cutoff = now_ms - grace_ms
    # List first, read references second: a record written in between names an object the
    # listing already saw, and the second pass below catches it.
    old, scanned, young = _orphan_candidates(
        cas.iter_objects(), referenced_artifact_ids(records, archive), cutoff_ms=cutoff
    )
    if old:
        # Second look just before deleting: an object put again meanwhile is young again,
        # one a run has since recorded is referenced.
        again, _, _ = _orphan_candidates(
            (info for info in cas.iter_objects() if info.artifact_id in old),
            referenced_artifact_ids(records, archive),
            cutoff_ms=cutoff,
        )
        young += len(old) - len(again)
        old = again
    tombstones = records.tombstones_for(old)
    doomed = [
        info
        for artifact_id, info in old.items()
        if artifact_id not in tombstones or tombstones[artifact_id].reason == ORPHAN_REASON
    ]
    fresh = [
        TombstoneRecord(
            artifact_id=info.artifact_id,
            artifact_class=ORPHAN_CLASS,
            policy=ORPHAN_POLICY,
            window_ms=grace_ms,
            reason=ORPHAN_REASON,
            bytes=info.size,
            deleted_at_ms=now_ms,
        )
        for info in doomed
        if info.artifact_id not in tombstones
    ]
    if fresh:
        records.add_tombstones(fresh)  # tombstones first: a crash never leaves a silent deletion
    for info in doomed:
        cas.delete(info.artifact_id)
        if on_deleted is not None:
            on_deleted(info)
    # Their data keys go too (as retention's deletions do): no KEK keeps depending on them.
    records.drop_data_keys(info.artifact_id for info in doomed)
    return OrphanSweep(
        scanned=scanned,
        deleted=len(doomed),
        bytes_freed=sum(info.size for info in doomed),
        kept_young=young,
        grace_ms=grace_ms,
    )


# --- scratch files ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScratchSweep:
    """What the scratch sweep did: files deleted, their bytes, young files kept."""

    deleted: int = 0
    bytes_freed: int = 0
    kept_young: int = 0


def sweep_scratch(cas: ArtifactStore, *, now_ms: int, grace_ms: int | None) -> ScratchSweep:
    """Remove the CAS's scratch files (``tmp/*.part``) last written more than ``grace_ms`` ago.

    A live write's scratch file is young; ``grace_ms`` None keeps them all. Raises
    ``CAS_BACKEND_ERROR``.
    """
    deleted = freed = young = 0
    for scratch in list(cas.iter_scratch()):
        if grace_ms is None or scratch.modified_ms > now_ms - grace_ms:
            young += 1
            continue
        cas.delete_scratch(scratch.name)
        deleted += 1
        freed += scratch.size
    return ScratchSweep(deleted=deleted, bytes_freed=freed, kept_young=young)


# --- archive ----------------------------------------------------------------------------


def _target_of(thread: ThreadRecord) -> tuple[str, str]:
    # A thread's target is its partition key; threads recorded without one are told apart
    # by their target node, so each is its own target and stays current (never archived).
    return thread.workflow_id, thread.target_key or f"node:{thread.target_node_id}"


def current_thread_ids(threads: Iterable[ThreadRecord]) -> set[str]:
    """The threads a run still starts from: the newest of each target (largest ``created_at_ms``; ties all count).

    A thread's id derives from its target's content (and the profile's identity parts),
    so the next run of an unchanged tree plans exactly the newest thread of each target
    again and reuses it. Older threads of a target were superseded by a changed tree (or
    another provider or profile version); their frames sit on node ids no current scan
    has, so no parent's context reads them. If a tree goes back to an older state whose
    thread was archived, that target runs again: the one cost of archiving, accepted.
    """
    threads = list(threads)
    newest: dict[tuple[str, str], int] = {}
    for thread in threads:
        key = _target_of(thread)
        newest[key] = max(thread.created_at_ms, newest.get(key, thread.created_at_ms))
    return {t.thread_id for t in threads if t.created_at_ms == newest[_target_of(t)]}


def archivable_threads(
    threads: Iterable[ThreadRecord],
    *,
    now_ms: int,
    archive_after_ms: Mapping[str, int | None],
    holds: Iterable[HoldRecord],
    current: set[str],
) -> list[ThreadRecord]:
    """The threads whose rows may move to the archive now, in thread_id order.

    A thread goes when all hold: its status is finished (`ARCHIVABLE_STATUSES`); its
    workflow has an ``archive_after`` window (``archive_after_ms``: workflow -> ms, None
    or absent keeps it forever) and ``updated_at_ms`` is older than that; no active hold
    names it or its workflow; it is not in ``current`` (`current_thread_ids`).

    Pure: reads nothing, writes nothing.
    """
    held_threads = {h.thread_id for h in holds if h.released_at_ms is None and h.thread_id}
    held_workflows = {h.workflow_id for h in holds if h.released_at_ms is None and h.workflow_id}
    chosen = []
    for thread in threads:
        window = archive_after_ms.get(thread.workflow_id)
        if (
            window is not None
            and thread.status in ARCHIVABLE_STATUSES
            and thread.updated_at_ms <= now_ms - window
            and thread.thread_id not in held_threads
            and thread.workflow_id not in held_workflows
            and thread.thread_id not in current
        ):
            chosen.append(thread)
    return sorted(chosen, key=lambda t: t.thread_id)


@dataclass(frozen=True)
class ArchiveRun:
    """What one archive pass did.

    Attributes:
        threads_archived: threads whose rows left the record store.
        rows: table -> rows written to Parquet by this pass.
        files: the Parquet files written.
        bytes_written: their total size in bytes.
        skipped_changed: chosen threads left in place because they changed (or were held)
            before the delete; their archived copy stays, the record store keeps the truth.
        discarded_files: files of an earlier, interrupted pass removed first.
    """

    threads_archived: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files: tuple[ArchiveFile, ...] = ()
    bytes_written: int = 0
    skipped_changed: int = 0
    discarded_files: int = 0


def _rows_of(records: RecordStore, threads: list[ThreadRecord]) -> dict[str, list[BaseModel]]:
    rows: dict[str, list[BaseModel]] = {
        "threads": list(threads),
        "turns": [],
        "gates": [],
        "prompt_links": [],
        "artifact_links": [],
        "frames": [],
    }
    for thread in threads:
        rows["turns"] += records.turns_for_thread(thread.thread_id)
        rows["gates"] += records.gates_for_thread(thread.thread_id)
        rows["prompt_links"] += records.prompt_links_for_thread(thread.thread_id)
        rows["artifact_links"] += records.artifact_links_for_thread(thread.thread_id)
        rows["frames"] += records.frames_for_thread(thread.thread_id)
    return rows


def archive_threads(
    records: RecordStore,
    archive: RecordArchive,
    *,
    now_ms: int,
    archive_after_ms: Mapping[str, int | None],
    compaction_id: str,
) -> ArchiveRun:
    """Move the rows of `archivable_threads` to Parquet, then delete them from the record store.

    The caller holds ``archive.locked()``. Order: files of an interrupted pass are
    discarded; the chosen threads' rows are read and written to one durable file per table
    (threads last); only then are the rows deleted, in one transaction, and only for
    threads unchanged since they were read (`RecordStore.delete_threads`). A pass killed
    anywhere loses nothing: before the threads file exists the rows are all still in the
    store and the next pass starts over; after it, the next pass finds the threads already
    archived with the same ``updated_at_ms``, writes them no second time and deletes them.

    Args:
        records: the record store.
        archive: the Parquet archive.
        now_ms: the time windows are judged against (epoch ms).
        archive_after_ms: workflow id -> its ``archive_after`` window in ms (None: never).
        compaction_id: names this pass's files.

    Returns:
        An `ArchiveRun`.

    Raises ``RECORD_UNAVAILABLE``, ``RETENTION_ARCHIVE_ERROR`` (nothing deleted then).
    """
    discarded = archive.discard_incomplete()
    threads = records.list_threads()
    current = current_thread_ids(threads)
    chosen = archivable_threads(
        threads,
        now_ms=now_ms,
        archive_after_ms=archive_after_ms,
        holds=records.active_holds(),
        current=current,
    )
    if not chosen:
        return ArchiveRun(discarded_files=discarded)
    already = archive.archived_threads()
    to_write = [t for t in chosen if already.get(t.thread_id) != t.updated_at_ms]
    rows = _rows_of(records, to_write)
    files = archive.write(compaction_id, rows, archived_at_ms=now_ms)
    # A hold placed while the files were written still wins.
    holds = records.active_holds()
    held_threads = {h.thread_id for h in holds if h.thread_id}
    held_workflows = {h.workflow_id for h in holds if h.workflow_id}
    expected = {
        t.thread_id: t.updated_at_ms
        for t in chosen
        if t.thread_id not in held_threads and t.workflow_id not in held_workflows
    }
    deleted = records.delete_threads(expected)
    return ArchiveRun(
        threads_archived=len(deleted),
        rows={name: len(items) for name, items in rows.items()} if files else {},
        files=tuple(files),
        bytes_written=sum(f.bytes for f in files),
        skipped_changed=len(chosen) - len(deleted),
        discarded_files=discarded,
    )


# --- annotations ------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotationFold:
    """What folding the annotation log did.

    Attributes:
        keys: the annotation keys with a fold window, by name.
        events_folded: events removed (each fold replaces a run of events by one snapshot).
    """

    keys: tuple[str, ...] = ()
    events_folded: int = 0


def fold_cutoffs(registry: KeyRegistry, *, now_ms: int) -> dict[str, int]:
    """key -> epoch ms before which its events fold: ``now_ms`` minus the key's ``fold_after`` window.

    Only annotation keys with a window (`KeyDescriptor.fold_after_ms`) appear.
    """
    return {
        descriptor.name: now_ms - descriptor.fold_after_ms
        for descriptor in registry.select(mutability="annotation")
        if descriptor.fold_after_ms is not None
    }


def fold_annotations(records: RecordStore, registry: KeyRegistry, *, now_ms: int) -> AnnotationFold:
    """Fold every annotation key's events older than its window into snapshots (see the module docstring).

    Raises ``RECORD_UNAVAILABLE`` (nothing folded).
    """
    cutoffs = fold_cutoffs(registry, now_ms=now_ms)
    folded = records.fold_annotation_events(cutoffs) if cutoffs else 0
    return AnnotationFold(keys=tuple(sorted(cutoffs)), events_folded=folded)
