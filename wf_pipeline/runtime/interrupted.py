"""Threads a stopped run leaves behind: every one ends ``completed`` or ``failed``.

A run stopped by a signal records its in-flight turn attempts as ``RUN_INTERRUPTED``
(`wf_pipeline.runtime.turn`); the threads it had planned but not finished are marked
``failed`` here, so no thread stays ``pending`` or ``running`` after the process is gone.
The next `wf run` runs them again (completed turns are reused), and `wf resume` resumes
them. A thread another live process is working on (it holds the thread's lease) is left
to that process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from wf_pipeline.errors import RUN_THREAD_BUSY, WfError
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.leases import thread_lease

log = logging.getLogger(__name__)

# Statuses a thread keeps when its run stops: it had already ended.
ENDED_STATUSES = ("completed", "failed", "aborted")


def mark_threads_failed(env: RuntimeEnv, thread_ids: Iterable[str], reason_code: str) -> list[str]:
    """Mark every listed thread that has not ended as ``failed``; returns the ids marked.

    Each thread is marked under its lease, taken without waiting: a thread whose lease
    another live process holds is in progress there and is left alone.

    Args:
        env: the runtime (its record store is read and written).
        thread_ids: the threads of the stopped run.
        reason_code: the catalogue code of why (e.g. ``RUN_INTERRUPTED``), for the log line.

    Returns:
        The ids of the threads this call marked ``failed``, in the given order.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE`` when the store cannot be reached.
    """
    marked = []
    for thread_id in dict.fromkeys(thread_ids):
        thread = env.records.get_thread(thread_id)
        if thread is None or thread.status in ENDED_STATUSES:
            continue
        try:
            with thread_lease(env.records, thread_id, wait_ms=0):
                current = env.records.get_thread(thread_id) or thread
                if current.status in ENDED_STATUSES:
                    continue
                env.records.save_thread(
                    current.model_copy(update={"status": "failed", "updated_at_ms": now_ms()})
                )
        except WfError as exc:
            if exc.code != RUN_THREAD_BUSY:
                raise
            continue  # another live process runs it
        marked.append(thread_id)
    if marked:
        log.warning("%d threads marked failed: %s", len(marked), reason_code)
    return marked
