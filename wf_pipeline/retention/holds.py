"""Legal holds: while one is active, nothing its thread (or any thread of its workflow) refers to is deleted.

A hold names exactly one scope, a thread id or a workflow id, and stays active until it
is released; releasing keeps the row (``released_at_ms`` set), so the record says who
was held and for how long.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from wf_pipeline.errors import RETENTION_HOLD_NOT_FOUND, RETENTION_SCOPE_UNKNOWN, RetentionError
from wf_pipeline.metadata.records import HoldRecord, hold_id_for, now_ms
from wf_pipeline.records import RecordStore


def place_hold(
    records: RecordStore,
    *,
    thread_id: str | None = None,
    workflow_id: str | None = None,
    reason: str = "",
    known_workflows: Iterable[str] = (),
    archived_threads: Collection[str] = (),
    at_ms: int | None = None,
) -> HoldRecord:
    """Record an active hold on one thread or one workflow.

    Args:
        records: the record store.
        thread_id, workflow_id: the scope; exactly one is given.
        reason: why (kept in the record; ids and case numbers, not payload).
        known_workflows: workflow ids the loaded profiles define; a workflow hold is
            accepted when it names one of them or one the record store has threads of.
        archived_threads: thread ids of the record archive (`RecordArchive.archived_threads`):
            a thread whose rows compaction moved there may be held too.
        at_ms: the hold's creation time (Unix epoch ms), default now.

    Returns:
        The stored `HoldRecord`.

    Raises:
        RetentionError: ``RETENTION_SCOPE_UNKNOWN`` (figures: scope, id) when both or
            neither scope is given, or the thread / workflow is unknown.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    if (thread_id is None) == (workflow_id is None):
        raise RetentionError(RETENTION_SCOPE_UNKNOWN, "a hold names exactly one thread id or one workflow id")
    created = now_ms() if at_ms is None else at_ms
    if thread_id is not None:
        if thread_id not in archived_threads and records.get_thread(thread_id) is None:
            raise RetentionError(
                RETENTION_SCOPE_UNKNOWN, f"no thread {thread_id} to hold", scope="thread", id=thread_id
            )
        hold = HoldRecord(
            hold_id=hold_id_for("thread", thread_id, created),
            thread_id=thread_id,
            reason=reason,
            created_at_ms=created,
        )
    else:
        assert workflow_id is not None
        if workflow_id not in set(known_workflows) and not records.list_threads(workflow_id=workflow_id):
            raise RetentionError(
                RETENTION_SCOPE_UNKNOWN,
                f"no workflow {workflow_id} to hold (no profile defines it and no thread runs it)",
                scope="workflow",
                id=workflow_id,
            )
        hold = HoldRecord(
            hold_id=hold_id_for("workflow", workflow_id, created),
            workflow_id=workflow_id,
            reason=reason,
            created_at_ms=created,
        )
    records.add_hold(hold)
    return hold


def release_holds(
    records: RecordStore,
    *,
    thread_id: str | None = None,
    workflow_id: str | None = None,
    hold_id: str | None = None,
    at_ms: int | None = None,
) -> list[HoldRecord]:
    """Release every active hold on a thread or a workflow, or the one hold ``hold_id``.

    Args:
        records: the record store.
        thread_id, workflow_id, hold_id: which holds; exactly one is given.
        at_ms: the release time (Unix epoch ms), default now.

    Returns:
        The released holds as they were before release, oldest first.

    Raises:
        RetentionError: ``RETENTION_HOLD_NOT_FOUND`` (figures: the scope given) when no
            active hold matches, or not exactly one selector is given.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    given = [value for value in (thread_id, workflow_id, hold_id) if value is not None]
    if len(given) != 1:
        raise RetentionError(
            RETENTION_HOLD_NOT_FOUND, "name exactly one thread id, workflow id or hold id to release"
        )
    released_at = now_ms() if at_ms is None else at_ms
    matching = [
        hold
        for hold in records.active_holds()
        if (thread_id is not None and hold.thread_id == thread_id)
        or (workflow_id is not None and hold.workflow_id == workflow_id)
        or (hold_id is not None and hold.hold_id == hold_id)
    ]
    released = [hold for hold in matching if records.release_hold(hold.hold_id, at_ms=released_at)]
    if not released:
        raise RetentionError(
            RETENTION_HOLD_NOT_FOUND,
            f"no active hold on {given[0]}",
            thread_id=thread_id,
            workflow_id=workflow_id,
            hold_id=hold_id,
        )
    return released
