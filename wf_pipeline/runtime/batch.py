"""One turn for many targets at once: the unit a batched Dagster step executes.

Provider calls of different threads run concurrently (``WF_PROVIDER_CONCURRENCY``);
each thread still goes through `run_turn` on its own, so one thread's failing gate or
provider error stops only that thread. A thread is skipped, with no provider call and
no record, when its upstream turn did not complete, or when its directory's children
have not finished (a parent never starts before its children: bottom-up).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wf_pipeline.errors import RUN_INPUT_NOT_READY, WfError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime.environment import RuntimeEnv
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
        Target key -> `TurnOutput`, in target order. After the turn that produces the
        final output, every completed target's output is written where its tree's outputs
        go (`wf_pipeline.runtime.outputs.write_step_outputs`). A thread that could not start is
        ``skipped`` with the reason as ``error_code``: ``RUN_CHILDREN_PENDING``, or the
        code raised before its provider call (e.g. ``RUN_TARGET_CHANGED``,
        ``METADATA_BUDGET_EXCEEDED``, ``CAS_NOT_FOUND``). Provider failures are ``failed``
        outputs (`run_turn`), not exceptions.

    Raises:
        KeyError: for a ``turn_id`` the profile does not have.
        TreeError: the scan's codes (``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``...)
            for a target's tree root.
        RunError: ``RUN_UNKNOWN_THREAD`` when ``thread_id`` names no recorded thread.
        RecordError: ``RECORD_*`` while opening a thread or checking its children.
    """
    turn = loaded.profile.turn(turn_id)
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
            target.key: pool.submit(_run_one, env, loaded, target, turn, identities[target.root], resumed)
            for target in targets
        }
        results = {key: future.result() for key, future in futures.items()}
    # The final turn's step writes the outputs, so every launch path does (UI, sensor, CLI).
    write_step_outputs(
        env, loaded, turn_id, targets, {key: (r.thread_id, r.status) for key, r in results.items()}
    )
    return results


def _run_one(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    target: Target,
    turn,
    identity: ThreadIdentity,
    thread_id: str | None,
) -> TurnOutput:
    scan = identity.scan
    if thread_id is not None:
        thread = open_thread(env, loaded, target, thread_id, scan, identity)
    else:
        plan = plan_thread(env, loaded, target, identity)
        thread = plan.thread
        if not plan.recorded and CONTEXT_REF not in turn.input_refs:
            # No thread of this identity has started (a parent whose children finished
            # since its first turn was skipped): nothing to continue, nothing to record.
            return TurnOutput.skipped(thread.thread_id, turn, target.key, RUN_INPUT_NOT_READY)
    if CONTEXT_REF in turn.input_refs and recorded_context_id(env, thread.thread_id) is None:
        pending = unsettled_children(env, loaded, scan, target.path, identity)
        if pending:
            # Its identity depends on the children's outputs: nothing is recorded under
            # an id that will not hold once they have finished.
            log.warning("thread %s waits for %d child directories", thread.thread_id, len(pending))
            return TurnOutput.skipped(thread.thread_id, turn, target.key, "RUN_CHILDREN_PENDING")
    if thread_id is None:
        plan.save_if_new(env)
    try:
        return run_turn(env, loaded, thread, target, turn.turn_id, scan)
    except WfError as exc:
        # Errors before the provider call (render, budget, changed tree) end this thread
        # only; the step goes on with the others. The message carries the error's figures
        # (a budget's name, size and limit), never payload text.
        log.warning("turn %s of thread %s could not start: %s", turn.turn_id, thread.thread_id, exc)
        return TurnOutput.skipped(thread.thread_id, turn, target.key, exc.code)


def _scans_by_root(env: RuntimeEnv, loaded: LoadedProfile, targets: Sequence[Target]) -> dict[Path, TreeScan]:
    # One scan per tree for the whole batch, not one per target.
    return {root: scan_workspace(env, loaded, root) for root in dict.fromkeys(t.root for t in targets)}
