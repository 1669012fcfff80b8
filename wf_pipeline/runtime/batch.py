"""One turn for many targets at once: the unit a batched Dagster step executes.

Provider calls of different threads run concurrently (``WF_PROVIDER_CONCURRENCY``);
each thread still goes through `run_turn` on its own, so one thread's failing gate or
provider error stops only that thread. A thread is skipped, with no provider call and
no record, when its upstream turn did not complete, or when its directory's children
have not finished (a parent never starts before its children: bottom-up). Any other
error ends the thread ``failed`` with its code and message, never ``running``. A thread's
turn runs under the thread's lease (`wf_pipeline.runtime.leases`), so two processes on
one home never call the provider twice for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wf_pipeline.errors import RUN_INPUT_NOT_READY, RUN_INTERRUPTED, RUN_THREAD_BUSY, WfError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.failure import mark_thread_failed, recorded_error_text
from wf_pipeline.runtime.leases import LEASE_TTL_MS, thread_lease
from wf_pipeline.runtime.measure import flush_telemetry
from wf_pipeline.runtime.outputs import write_step_outputs
from wf_pipeline.runtime.targets import Target
from wf_pipeline.runtime.threads import (
    ThreadIdentity,
    open_thread,
    plan_thread,
    recorded_context_id,
    scan_workspace,
    unsettled_children,
)
from wf_pipeline.runtime.turn import CHILDREN_PENDING, CONTEXT_REF, TurnOutput, run_turn
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.tree import TreeScan

log = product_logger(__name__)


def run_turn_batch(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    turn_id: str,
    targets: Sequence[Target],
    *,
    thread_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, TurnOutput]:
    """Run ``turn_id`` for every target, the provider calls of different threads concurrently.

    Args:
        env: the open runtime; ``settings.provider_concurrency`` bounds the worker threads.
        loaded: the profile the turn belongs to.
        turn_id: the turn to run.
        targets: the step's targets (one Dagster partition each).
        thread_id: the thread to resume; it applies only when ``targets`` holds one target.
        run_id: the Dagster run of this step, written with its telemetry rows.

    Returns:
        Target key -> `TurnOutput`, in target order. A directory whose children have not
        finished is ``skipped`` with ``RUN_CHILDREN_PENDING`` (it waits; not a failure), a
        thread whose earlier turn failed is ``skipped`` with that failure's code. A turn
        that meets an error before or around its provider call (``RUN_TARGET_CHANGED``,
        ``METADATA_BUDGET_EXCEEDED``, ``PROFILE_TEMPLATE_*``, ``CAS_*``, ``RECORD_*``) is
        ``failed`` with that code and its thread is recorded ``failed`` with the code and
        message (`wf_pipeline.runtime.failure.mark_thread_failed`). Provider failures are
        ``failed`` outputs too (`run_turn`), not exceptions. ``RUN_INTERRUPTED`` (``env.interrupt`` was set before it
        started) and ``RUN_THREAD_BUSY`` (another live process kept the thread's lease,
        `wf_pipeline.runtime.leases`) are ``skipped``: the thread is not failed by them here. After the turn that produces the final
        output, every completed target's output is written where its tree's outputs go
        (`wf_pipeline.runtime.outputs.write_step_outputs`). The telemetry rows the
        step's turns recorded are written when it ends, one file per partition
        (`wf_pipeline.runtime.measure.flush_telemetry`; a telemetry failure is logged).

    Raises:
        BaseException: an interrupt raised into the waiting thread (a signal) propagates
            after ``env.interrupt`` is set and the workers have recorded their calls as
            ``RUN_INTERRUPTED``.
        KeyError: for a ``turn_id`` the profile does not have.
        TreeError: the scan's codes (``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``...)
            for a target's tree root.
        RunError: ``RUN_UNKNOWN_THREAD`` when ``thread_id`` names no recorded thread.
        RecordError: ``RECORD_*`` while opening a thread (after that, a record error is
            the thread's failure); an unexpected exception in a turn is the thread's
            ``RUN_TURN_CRASHED`` failure.
    """
    try:
        return _run_batch(env, loaded, [turn_id], targets, thread_id)[turn_id]
    finally:
        # Once per step, never per row; whatever happened to the turns.
        flush_telemetry(env, run_id)


def run_segment_batch(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    turn_ids: Sequence[str],
    targets: Sequence[Target],
    *,
    thread_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, dict[str, TurnOutput]]:
    """Run the turns of one parallel segment for every target, a thread's turns concurrently.

    The turns (`wf_pipeline.profiles.turn_segments`: none reads another's output) of one
    thread run at the same time, each through `run_turn` with its own records, under the
    thread's one lease, which the step takes once for all of them; threads of different
    targets run concurrently too, as in `run_turn_batch`. A turn that fails (its gate
    stops the thread, a provider error) stops neither its siblings nor their records: the
    thread is recorded ``failed`` with that turn's code once its siblings have committed
    (`wf_pipeline.records.merged_thread`), and what depends on it does not run.

    Args:
        env: the open runtime.
        loaded: the profile.
        turn_ids: the segment's turns to run (a subset when the step's selection is one).
        targets: the step's targets.
        thread_id: the thread to resume; it applies only when ``targets`` holds one target.
        run_id: the Dagster run of this step, written with its telemetry rows.

    Returns:
        Turn id -> target key -> `TurnOutput`, each as `run_turn_batch` describes it.

    Raises:
        As `run_turn_batch`.
    """
    try:
        return _run_batch(env, loaded, turn_ids, targets, thread_id)
    finally:
        flush_telemetry(env, run_id)


def _run_batch(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    turn_ids: Sequence[str],
    targets: Sequence[Target],
    thread_id: str | None,
) -> dict[str, dict[str, TurnOutput]]:
    turns = [loaded.profile.turn(turn_id) for turn_id in turn_ids]
    scans = _scans_by_root(env, loaded, targets)
    # Thread ids as the records stand when the step starts: children finished in earlier
    # levels are part of a parent's identity from here on.
    identities = {root: ThreadIdentity(env, loaded, scan) for root, scan in scans.items()}
    resumed = thread_id if len(targets) == 1 else None
    workers = max(1, min(env.settings.provider_concurrency, len(targets)))
    # Each worker also opens its thread and checks the children, so that work overlaps
    # the provider calls of the others instead of delaying the first call.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wf-turn") as pool:
        futures = {
            target.key: pool.submit(_run_one, env, loaded, target, turns, identities[target.root], resumed)
            for target in targets
        }
        try:
            by_target = {key: future.result() for key, future in futures.items()}
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # A signal reached this thread while it waited (Dagster raises its execution
                # interrupt here, KeyboardInterrupt outside Dagster): the workers abandon their
                # provider calls and record them as interrupted, so leaving the pool (which
                # waits for them) takes a moment, not the rest of every call.
                env.interrupt.set()
                pool.shutdown(wait=False, cancel_futures=True)
            raise
    results = {turn.turn_id: {key: outs[turn.turn_id] for key, outs in by_target.items()} for turn in turns}
    # The final turn's step writes the outputs, so every launch path does (UI, sensor, CLI).
    for turn_id, outputs in results.items():
        write_step_outputs(
            env, loaded, turn_id, targets, {key: (r.thread_id, r.status) for key, r in outputs.items()}
        )
    return results


def _run_one(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    target: Target,
    turns: Sequence[Any],
    identity: ThreadIdentity,
    thread_id: str | None,
) -> dict[str, TurnOutput]:
    """The turns of one thread: turn id -> output. Several turns (a segment) run concurrently."""
    scan = identity.scan
    plan = None
    reads_context = any(CONTEXT_REF in turn.input_refs for turn in turns)

    def every(make: Callable[[Any], TurnOutput]) -> dict[str, TurnOutput]:
        return {turn.turn_id: make(turn) for turn in turns}

    if thread_id is not None:
        thread = open_thread(env, loaded, target, thread_id, scan, identity)
    else:
        plan = plan_thread(env, loaded, target, identity)
        thread = plan.thread
        if not plan.recorded and not reads_context:
            # No thread of this identity has started (a parent whose children finished
            # since its first turn was skipped): nothing to continue, nothing to record.
            return every(lambda t: TurnOutput.skipped(thread.thread_id, t, target.key, RUN_INPUT_NOT_READY))
    if env.interrupt.is_set():
        return every(lambda t: TurnOutput.skipped(thread.thread_id, t, target.key, RUN_INTERRUPTED))
    try:
        if reads_context and recorded_context_id(env, thread.thread_id) is None:
            pending = unsettled_children(env, loaded, scan, target.path, identity)
            if pending:
                # Not a failure: the parent waits for its children (bottom-up order). Its
                # identity depends on their outputs, so nothing is recorded under an id that
                # will not hold once they have finished.
                log.info("thread %s waits for %d child directories", thread.thread_id, len(pending))
                return every(lambda t: TurnOutput.skipped(thread.thread_id, t, target.key, CHILDREN_PENDING))
        if plan is not None:
            thread = plan.save_if_new(env)
        # One holder at a time runs a thread's turns: a waiter then finds them completed
        # and reuses them. The holder finishes within the turns' deadline, or its lease
        # expires. Sibling turns of a segment share the one lease this step holds.
        wait_ms = max(turn.timeout_ms for turn in turns) + LEASE_TTL_MS
        with thread_lease(env.records, thread.thread_id, wait_ms=wait_ms, interrupt=env.interrupt):
            # Read again under the lease: another process may have moved the thread on.
            current = env.records.get_thread(thread.thread_id) or thread
            if len(turns) == 1:
                return every(lambda t: _guarded(env, loaded, current, target, t, scan))
            with ThreadPoolExecutor(max_workers=len(turns), thread_name_prefix="wf-segment") as pool:
                futures = {
                    turn.turn_id: pool.submit(_guarded, env, loaded, current, target, turn, scan)
                    for turn in turns
                }
                return {turn_id: future.result() for turn_id, future in futures.items()}
    except Exception as exc:  # noqa: BLE001 - classified per turn: skipped or this thread's failure
        return {turn.turn_id: _outcome_of(env, loaded, thread, target, turn, exc) for turn in turns}


def _guarded(
    env: RuntimeEnv, loaded: LoadedProfile, thread: Any, target: Target, turn: Any, scan: TreeScan
) -> TurnOutput:
    """`run_turn` for one turn; an error it raises becomes that turn's outcome (`_outcome_of`)."""
    try:
        return run_turn(env, loaded, thread, target, turn.turn_id, scan)
    except Exception as exc:  # noqa: BLE001 - one turn's error ends this thread only
        return _outcome_of(env, loaded, thread, target, turn, exc)


def _outcome_of(
    env: RuntimeEnv, loaded: LoadedProfile, thread: Any, target: Target, turn: Any, exc: Exception
) -> TurnOutput:
    """What an error a turn met means for it: skipped (busy, interrupted, an earlier failure) or failed."""
    if isinstance(exc, WfError):
        if exc.code in (RUN_THREAD_BUSY, RUN_INTERRUPTED):
            # In progress in another process, or stopped by a signal (the run's stopper marks
            # its threads): neither is this thread's own failure.
            log.warning("%s: turn %s of thread %s: %s", exc.code, turn.turn_id, thread.thread_id, exc.message)
            return TurnOutput.skipped(thread.thread_id, turn, target.key, exc.code)
        if exc.code == RUN_INPUT_NOT_READY and thread.status == "failed":
            # An earlier turn of this thread failed: its code and message stand.
            return TurnOutput.skipped(
                thread.thread_id,
                turn,
                target.key,
                thread.error_code or exc.code,
                error_text=thread.error_text,
            )
        # Errors before the provider call (render, budget, changed tree, storage, records)
        # end this thread only; the step goes on with the others. The message carries the
        # error's figures (a budget's name, size and limit), never payload text.
        digest_only = loaded.redaction.hash_free_text
        code = mark_thread_failed(env, thread, exc, digest_only=digest_only)
        text = recorded_error_text(exc.message, digest_only=digest_only)
        log.warning("%s: turn %s of thread %s failed: %s", code, turn.turn_id, thread.thread_id, text)
        return TurnOutput.skipped(thread.thread_id, turn, target.key, code, status="failed", error_text=text)
    code = mark_thread_failed(env, thread, exc, digest_only=loaded.redaction.hash_free_text)
    # The type only: an unexpected exception's text may quote the data it choked on.
    log.warning(
        "%s: turn %s of thread %s stopped on %s", code, turn.turn_id, thread.thread_id, type(exc).__name__
    )
    log.debug("turn %s of thread %s", turn.turn_id, thread.thread_id, exc_info=True)
    return TurnOutput.skipped(
        thread.thread_id, turn, target.key, code, status="failed", error_text=type(exc).__name__
    )


def _scans_by_root(env: RuntimeEnv, loaded: LoadedProfile, targets: Sequence[Target]) -> dict[Path, TreeScan]:
    # One scan per tree for the whole batch, not one per target.
    return {root: scan_workspace(env, loaded, root) for root in dict.fromkeys(t.root for t in targets)}
