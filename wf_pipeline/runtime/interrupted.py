"""Threads a stopped run leaves behind: every one ends ``completed`` or ``failed``.

A run stopped by a signal records its in-flight turn attempts as ``RUN_INTERRUPTED``
(`wf_pipeline.runtime.turn`); the threads it had planned but not finished are marked
``failed`` here, so no thread stays ``pending`` or ``running`` after the process is gone.
The next `wf run` runs them again (completed turns are reused), and `wf resume` resumes
them. A thread another live process is working on (it holds the thread's lease) is left
to that process.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from wf_pipeline.errors import RUN_THREAD_BUSY, WfError
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.failure import failed_thread
from wf_pipeline.runtime.leases import holder_is_this_process, thread_lease
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

# Statuses a thread keeps when its run stops: it had already ended.
ENDED_STATUSES = ("completed", "failed", "aborted")
# Longest wait for a worker of this process that still holds a thread's lease (ms).
OWN_WORKER_WAIT_MS = 10_000


def unfinished_threads_of(
    env: RuntimeEnv, workflow_id: str, target_keys: Collection[str], since_ms: int
) -> list[str]:
    """Threads of these targets created since ``since_ms`` that have not ended.

    A directory's thread id depends on its children's outputs at the time its level
    starts, so the threads a run actually created can differ from the ids it planned;
    the records of its targets name them all.

    Args:
        env: the runtime (its record store is read).
        workflow_id: the run's workflow.
        target_keys: the run's targets (partition keys).
        since_ms: when the run started, Unix epoch in ms; older threads belong to earlier runs.

    Returns:
        Their ids, oldest first.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    keys = set(target_keys)
    threads = [
        thread
        for thread in env.records.list_threads(workflow_id)
        if thread.target_key in keys
        and thread.status not in ENDED_STATUSES
        and thread.created_at_ms >= since_ms
    ]
    return [thread.thread_id for thread in sorted(threads, key=lambda t: t.created_at_ms)]


def mark_threads_failed(env: RuntimeEnv, thread_ids: Iterable[str], reason_code: str) -> list[str]:
    """Mark every listed thread that has not ended as ``failed``; returns the ids marked.

    Each thread is marked under its lease. A thread whose lease another live process
    holds is in progress there and is left alone; one a worker of this process still
    holds (it is ending its turn at the interrupt) is waited for, up to
    `OWN_WORKER_WAIT_MS`. Each marked thread records ``reason_code`` as its ``error_code``.

    Args:
        env: the runtime (its record store is read and written).
        thread_ids: the threads of the stopped run.
        reason_code: the catalogue code of why (e.g. ``RUN_INTERRUPTED``), recorded on each thread.

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
        if _mark_failed(env, thread_id, reason_code):
            marked.append(thread_id)
    if marked:
        log.info("%d threads marked failed: %s", len(marked), reason_code)
    return marked


def _mark_failed(env: RuntimeEnv, thread_id: str, reason_code: str, wait_ms: int = 0) -> bool:
    # Under the thread's lease, so a live worker elsewhere keeps the thread it runs.
    try:
        with thread_lease(env.records, thread_id, wait_ms=wait_ms):
            current = env.records.get_thread(thread_id)
            if current is None or current.status in ENDED_STATUSES:
                return False
            env.records.save_thread(
                failed_thread(current, reason_code, f"the run stopped before thread {thread_id} ended")
            )
            return True
    except WfError as exc:
        if exc.code != RUN_THREAD_BUSY:
            raise
        if wait_ms == 0 and holder_is_this_process(str(exc.details.get("holder", ""))):
            # A worker of this process is still ending its turn (it stops at the interrupt): wait for it.
            return _mark_failed(env, thread_id, reason_code, OWN_WORKER_WAIT_MS)
        return False  # another live process runs it
