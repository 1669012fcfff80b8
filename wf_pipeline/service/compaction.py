"""Use case: compact the stores (`wf compact`, and the Dagster job that runs it with retention).

One call does, in this order: archive the record rows of old, finished, superseded threads
to Parquet; delete orphan CAS objects (tombstone first) and stale scratch files after the
grace period; fold old annotation events into snapshots; merge the telemetry files of
closed days. The rules live in
`wf_pipeline.retention.compaction`; this module only gathers what they need (profiles'
windows, settings, the current time) and reports what happened.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wf_pipeline.cas import open_cas
from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.errors import masked_url
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.metadata.records import now_ms as current_ms
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY
from wf_pipeline.profiles import ProfileCatalog
from wf_pipeline.records import open_record_store
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.compaction import (
    AnnotationFold,
    ArchiveRun,
    OrphanSweep,
    ScratchSweep,
    archive_threads,
    fold_annotations,
    sweep_orphans,
    sweep_scratch,
)
from wf_pipeline.retention.policies import require_policies
from wf_pipeline.service.audit import export_audit_events
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import TelemetryStore, open_recorder
from wf_pipeline.telemetry.query import archive_location
from wf_pipeline.telemetry.store import CompactionResult as TelemetryCompaction

# The parts of a compaction, in order, for progress reports.
PARTS = 5

# Telemetry rows of orphan deletions: no workflow's record named the object.
ORPHAN_WORKFLOW = "_orphan"


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction did, per part.

    Attributes:
        compaction_id: names this run's archive files.
        now_ms: the time every age was judged against (epoch ms).
        grace_ms: the orphan and scratch grace period applied (ms; None: ``forever``).
        archive_dir: the archive root.
        archive: the archive pass (threads moved, rows and bytes written).
        orphans: the orphan sweep (objects scanned, deleted, bytes freed, kept young).
        scratch: the scratch sweep (files deleted, bytes freed, kept young).
        annotations: the annotation fold (keys with a window, events folded).
        telemetry: the telemetry compaction (partitions merged, files merged, rows, bytes
            before and after), or None when telemetry is off.
        audit_exported: audit events copied to the ``audit_events`` telemetry table first
            (`wf_pipeline.service.audit.export_audit_events`; 0 with telemetry off).
        cas_url: the CAS, password masked.
    """

    compaction_id: str
    now_ms: int
    grace_ms: int | None
    archive_dir: str
    cas_url: str
    archive: ArchiveRun = field(default_factory=ArchiveRun)
    orphans: OrphanSweep = field(default_factory=OrphanSweep)
    scratch: ScratchSweep = field(default_factory=ScratchSweep)
    annotations: AnnotationFold = field(default_factory=AnnotationFold)
    telemetry: TelemetryCompaction | None = None
    audit_exported: int = 0

    @property
    def bytes_freed(self) -> int:
        """Bytes removed from the CAS (orphans and scratch files)."""
        return self.orphans.bytes_freed + self.scratch.bytes_freed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: ids, counts, sizes in bytes, times in ms; archive files as paths."""
        archive = asdict(self.archive)
        archive["files"] = [
            {"table": f.table, "path": str(f.path), "rows": f.rows, "bytes": f.bytes}
            for f in self.archive.files
        ]
        return {
            "compaction_id": self.compaction_id,
            "now_ms": self.now_ms,
            "grace_ms": self.grace_ms,
            "archive_dir": self.archive_dir,
            "cas_url": self.cas_url,
            "archive": archive,
            "orphans": asdict(self.orphans),
            "scratch": asdict(self.scratch),
            "annotations": {
                "keys": list(self.annotations.keys),
                "events_folded": self.annotations.events_folded,
            },
            "telemetry": None if self.telemetry is None else asdict(self.telemetry),
            "audit_exported": self.audit_exported,
            "bytes_freed": self.bytes_freed,
        }


def orphan_grace_ms(settings: Settings, catalog: ProfileCatalog) -> int | None:
    """The orphan and scratch grace period: the longest of ``WF_COMPACT_GRACE`` and every profile's ``grace``.

    An orphan belongs to no workflow, so the most careful window of any applies; profiles
    without a ``grace`` (the default, 0) leave ``WF_COMPACT_GRACE`` as the floor. Returns
    ms, or None when ``WF_COMPACT_GRACE`` is ``forever`` (nothing is swept). Raises
    ``METADATA_BAD_DURATION`` for a bad ``WF_COMPACT_GRACE``.
    """
    floor = parse_duration_ms(settings.compact_grace)
    if floor is None:
        return None
    return max([floor, *(profile.retention.grace_ms for profile in catalog.all())])


def compact(
    settings: Settings,
    now_ms: int | None = None,
    *,
    workspace_dir: Path | None = None,
    catalog: ProfileCatalog | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> CompactionResult:
    """Archive old threads' records, sweep orphans and scratch files, fold old annotation events, merge closed telemetry days.

    Args:
        settings: the stores (CAS, records, telemetry), ``home`` (the archive is
            ``$WF_HOME/archive``) and ``compact_grace``.
        now_ms: the time ages are judged against (epoch ms; default now). Telemetry days
            before this time's UTC day are closed.
        workspace_dir: the workspace profile layer (default the working directory); the
            profiles give each workflow's ``archive_after`` and ``grace``.
        catalog: the loaded profiles, instead of loading them.
        on_progress: called with (parts done, `PARTS`) after each part.

    Returns:
        A `CompactionResult`.

    Raises:
        MetadataError: ``METADATA_BAD_DURATION`` (``WF_COMPACT_GRACE``).
        RetentionError: ``RETENTION_POLICY_UNAVAILABLE`` (a profile file failed to load: its
            ``archive_after`` and ``grace`` are unknown, so nothing is done),
            ``RETENTION_ARCHIVE_ERROR`` (no record deleted).
        CasError, RecordError, ProfileError: the stores' and loader's codes.
        TelemetryError: ``TELEMETRY_WRITE_FAILED`` from the audit export or the telemetry compaction.
    """
    now = current_ms() if now_ms is None else now_ms
    catalog = catalog or load_profiles(settings, workspace_dir or Path.cwd(), warn=False)
    require_policies(catalog, "compact")
    grace_ms = orphan_grace_ms(settings, catalog)
    archive_after = {profile.workflow_id: profile.retention.archive_after_ms for profile in catalog.all()}
    archive = RecordArchive(Path(archive_location(settings)))
    compaction_id = f"{now}-{uuid.uuid4().hex[:8]}"
    progress = on_progress or (lambda done, total: None)
    recorder = open_recorder(settings)
    cas = open_cas(settings.cas_url, **settings.cas_options())
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    try:
        # One sweep at a time: the home's lock and the record store's span archiving and the
        # orphan sweep, whose reference set reads the archive and the tombstones.
        with archive.locked(), records.sweep_lock():
            archived = archive_threads(
                records, archive, now_ms=now, archive_after_ms=archive_after, compaction_id=compaction_id
            )
            progress(1, PARTS)
            orphans = sweep_orphans(
                cas,
                records,
                archive,
                now_ms=now,
                grace_ms=grace_ms,
                on_deleted=lambda info: recorder.artifact_event(
                    workflow_id=ORPHAN_WORKFLOW,
                    profile_version=None,
                    thread_id=None,
                    turn_id=None,
                    node_id=None,
                    frame_id=None,
                    artifact_class="orphan",
                    bytes=info.size,
                    outcome="deleted",
                    ts_ms=now,
                ),
            )
            progress(2, PARTS)
        scratch = sweep_scratch(cas, now_ms=now, grace_ms=grace_ms)
        recorder.flush_safely()
        progress(3, PARTS)
        annotations = fold_annotations(records, FRAME_KEY_REGISTRY, now_ms=now)
        progress(4, PARTS)
        telemetry = None
        # The audit trail's Parquet copy catches up with events no privileged read copied
        # (contexts audited by runs), so the scheduled maintenance keeps it current.
        audit_exported = int(export_audit_events(settings)["exported"])
        if settings.telemetry:
            today = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).date()
            telemetry = TelemetryStore(settings.telemetry_url).compact(before_date=today)
        progress(5, PARTS)
    finally:
        records.close()
        cas.close()
    return CompactionResult(
        compaction_id=compaction_id,
        now_ms=now,
        grace_ms=grace_ms,
        archive_dir=str(archive.root),
        cas_url=masked_url(settings.cas_url),
        archive=archived,
        orphans=orphans,
        scratch=scratch,
        annotations=annotations,
        telemetry=telemetry,
        audit_exported=audit_exported,
    )
