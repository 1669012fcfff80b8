"""One turn for many targets at once: the unit a batched Dagster step executes.

Provider calls of different threads run concurrently (``WF_PROVIDER_CONCURRENCY``);
each thread still goes through `run_turn` on its own, so one thread's failing gate or
provider error stops only that thread. A thread is skipped, with no provider call and
no record, when its upstream turn did not complete, or when its directory's children
have not finished (a parent never starts before its children: bottom-up). A thread's
turn runs under the thread's lease (`wf_pipeline.runtime.leases`), so two processes on
one home never call the provider twice for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wf_pipeline.errors import RUN_INTERRUPTED, WfError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.leases import LEASE_TTL_MS, thread_lease
from wf_pipeline.runtime.targets import Target
from wf_pipeline.runtime.threads import open_thread, recorded_context_id, scan_workspace, unsettled_children
from wf_pipeline.runtime.turn import CONTEXT_REF, TurnOutput, run_turn
from wf_pipeline.tree import TreeScan

log = logging.getLogger(__name__)


def run_turn_batch(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    turn_id: str,
    targets: Sequence[Target],
    *,
    thread_id: str | None = None,
) -> dict[str, TurnOutput]:
    """Run ``turn_id`` for every target, the provider calls of different threads concurrently.

    Args:
        env: the open runtime; ``settings.provider_concurrency`` bounds the worker threads.
        loaded: the profile the turn belongs to.
        turn_id: the turn to run.
        targets: the step's targets (one Dagster partition each).
        thread_id: the thread to resume; it applies only when ``targets`` holds one target.

    Returns:
        Target key -> `TurnOutput`, in target order. A thread that could not start is
        ``skipped`` with the reason as ``error_code``: ``RUN_CHILDREN_PENDING``,
        ``RUN_INTERRUPTED`` (``env.interrupt`` was set before it started), ``RUN_THREAD_BUSY``
        (another live process kept the thread's lease, `wf_pipeline.runtime.leases`), or the
        code raised before its provider call (e.g. ``RUN_TARGET_CHANGED``,
        ``METADATA_BUDGET_EXCEEDED``, ``CAS_NOT_FOUND``). Provider failures are ``failed``
        outputs (`run_turn`), not exceptions.

    Raises:
        BaseException: an interrupt raised into the waiting thread (a signal) propagates
            after ``env.interrupt`` is set and the workers have recorded their calls as
            ``RUN_INTERRUPTED``.
        KeyError: for a ``turn_id`` the profile does not have.
        TreeError: the scan's codes (``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``...)
            for a target's tree root.
        RunError: ``RUN_UNKNOWN_THREAD`` when ``thread_id`` names no recorded thread.
        RecordError: ``RECORD_*`` while opening a thread or checking its children.
    """
    turn = loaded.profile.turn(turn_id)
    scans = _scans_by_root(env, loaded, targets)
    resumed = thread_id if len(targets) == 1 else None
    workers = max(1, min(env.settings.provider_concurrency, len(targets)))
    # Each worker also opens its thread and checks the children, so that work overlaps
    # the provider calls of the others instead of delaying the first call.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wf-turn") as pool:
        futures = {
            target.key: pool.submit(_run_one, env, loaded, target, turn, scans[target.root], resumed)
            for target in targets
        }
        try:
            return {key: future.result() for key, future in futures.items()}
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # A signal reached this thread while it waited (Dagster raises its execution
                # interrupt here, KeyboardInterrupt outside Dagster): the workers abandon their
                # provider calls and record them as interrupted, so leaving the pool (which
                # waits for them) takes a moment, not the rest of every call.
                env.interrupt.set()
                pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_one(
    env: RuntimeEnv, loaded: LoadedProfile, target: Target, turn, scan: TreeScan, thread_id: str | None
) -> TurnOutput:
    thread = open_thread(env, loaded, target, thread_id, scan)
    if env.interrupt.is_set():
        return TurnOutput.skipped(thread.thread_id, turn, target.key, RUN_INTERRUPTED)
    if CONTEXT_REF in turn.input_refs and recorded_context_id(env, thread.thread_id) is None:
        pending = unsettled_children(env, loaded, scan, target.path)
        if pending:
            log.warning("thread %s waits for %d child directories", thread.thread_id, len(pending))
            return TurnOutput.skipped(thread.thread_id, turn, target.key, "RUN_CHILDREN_PENDING")
    try:
        # One holder at a time runs a thread's turn: a waiter then finds the turn completed
        # and reuses it. The holder finishes within the turn's deadline, or its lease expires.
        with thread_lease(
            env.records, thread.thread_id, wait_ms=turn.timeout_ms + LEASE_TTL_MS, interrupt=env.interrupt
        ):
            # Read again under the lease: another process may have moved the thread on.
            current = env.records.get_thread(thread.thread_id) or thread
            return run_turn(env, loaded, current, target, turn.turn_id, scan)
    except WfError as exc:
        # Errors before the provider call (render, budget, changed tree) end this thread
        # only; the step goes on with the others. The message carries the error's figures
        # (a budget's name, size and limit), never payload text.
        log.warning("turn %s of thread %s could not start: %s", turn.turn_id, thread.thread_id, exc)
        return TurnOutput.skipped(thread.thread_id, turn, target.key, exc.code)


def _scans_by_root(env: RuntimeEnv, loaded: LoadedProfile, targets: Sequence[Target]) -> dict[Path, TreeScan]:
    # One scan per tree for the whole batch, not one per target.
    return {root: scan_workspace(env, loaded, root) for root in dict.fromkeys(t.root for t in targets)}
