"""A run over a tree: plan the threads bottom-up, then summarise and write the outputs.

Executing the pending threads is the compiler's job (through Dagster); this module only
decides what needs to run and reports what happened, from the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.errors import WfError
from wf_pipeline.metadata.records import ThreadRecord, TreeRecord
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime.branches import skipped_by_branch
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.outputs import output_directory, tree_of, write_thread_output
from wf_pipeline.runtime.targets import Target, register_targets, target_depth
from wf_pipeline.runtime.threads import (
    ThreadIdentity,
    ThreadPlan,
    final_artifact_id,
    plan_thread,
    scan_workspace,
    unsettled_children,
)
from wf_pipeline.tree import TreeScan


@dataclass(frozen=True)
class RunPlan:
    """What a run over one tree has to do, decided from the records before anything runs.

    Attributes:
        loaded: the profile the run uses.
        scan: the tree as scanned for this run.
        threads: one `ThreadPlan` per documentable directory, deepest directories first.
    """

    loaded: LoadedProfile
    scan: TreeScan
    threads: tuple[ThreadPlan, ...]  # deepest directories first

    @property
    def pending(self) -> list[ThreadPlan]:
        """The threads that must run (not reusable), in plan order."""
        return [plan for plan in self.threads if not plan.reusable]

    @property
    def reused(self) -> list[ThreadPlan]:
        """The completed threads whose final artifact is still in the CAS, in plan order."""
        return [plan for plan in self.threads if plan.reusable]


def plan_run(env: RuntimeEnv, loaded: LoadedProfile, scan: TreeScan) -> RunPlan:
    """Register the profile's targets and decide, per thread identity, which threads must run.

    The targets are every documentable directory, or the root only for a profile that
    declares ``targets: {kind: root}`` (`wf_pipeline.runtime.targets.planned_directories`).

    New threads are saved as ``pending``; recorded ones are left as they are. A parent's
    identity holds its children's outputs, so its entry here is provisional until its
    level starts (`replan`).

    Args:
        env: the runtime (its record store is read and written, its CAS checked).
        loaded: the profile to run.
        scan: the tree as scanned for this run (`scan_workspace`).

    Returns:
        A `RunPlan` over every documentable directory, deepest first.

    Raises:
        MetadataError: as `thread_id_of` (a dedupe key no loaded profile can have).
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    targets = register_targets(env.records, scan, loaded.profile.target_kind)
    return RunPlan(
        loaded=loaded, scan=scan, threads=tuple(replan(env, loaded, scan, targets, before_run=True))
    )


def restrict_plan(plan: RunPlan, only_paths: Iterable[str]) -> RunPlan:
    """``plan`` with only the threads of the target directories ``only_paths``, order kept.

    What a workflow that an agent's policy gives a subset of a tree's targets runs
    (`wf_pipeline.agents`): the other targets are neither run nor reported. Their
    partitions are not synced either, so each depth level of the subset stays one
    contiguous partition range. A target whose children are outside the subset waits for
    their threads of this workflow as always (``RUN_CHILDREN_PENDING``).

    Args:
        plan: a `plan_run` plan.
        only_paths: target paths relative to the tree root (``.`` for the root).

    Returns:
        A new `RunPlan`; unknown paths are ignored. Raises nothing.
    """
    wanted = set(only_paths)
    return RunPlan(
        loaded=plan.loaded,
        scan=plan.scan,
        threads=tuple(entry for entry in plan.threads if entry.target.path in wanted),
    )


def replan(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    scan: TreeScan,
    targets: Iterable[Target],
    *,
    before_run: bool = False,
) -> list[ThreadPlan]:
    """The threads of ``targets`` for the records as they stand now; new final ones are saved as ``pending``.

    Called again when a depth level starts, so a parent's thread is the one for its
    children's outputs at that time, and by the run summary, so it reports the threads
    that actually ran. Only a thread whose identity is final is saved: one saved with an
    identity its run then changes would stay ``pending`` for good.

    Args:
        env: the runtime (records read and written).
        loaded: the profile.
        scan: the tree as scanned for this run.
        targets: the targets to plan, deepest first.
        before_run: the run has not started: every child planned here that is not
            reusable (failed ones included) runs first and may change its parent's
            identity, so that parent is not saved yet.

    Returns:
        One `ThreadPlan` per target, in order.

    Raises:
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    identity = ThreadIdentity(env, loaded, scan)
    to_run: set[str] = set()
    plans = []
    for target in targets:
        plan = plan_thread(env, loaded, target, identity)
        # A parent whose children are still to run gets another id once they have.
        final = not unsettled_children(env, loaded, scan, target.path, identity)
        if final and before_run:
            final = to_run.isdisjoint(identity.child_threads(target.path))
        if final and plan.save_if_new(env) != plan.thread:
            plan = plan_thread(env, loaded, target, identity)  # another process recorded it meanwhile
        if not plan.reusable:
            to_run.add(target.path)
        plans.append(plan)
    return plans


@dataclass(frozen=True)
class ThreadSummary:
    """One thread's line in a run report: ids and paths only.

    Attributes:
        target: the target (partition) key.
        path: the target directory, relative to the tree root (``.`` for the root).
        thread_id: the thread's id.
        status: the thread's recorded status after the run.
        output_path: the file the output sink wrote (or found already equal), else None.
        final_artifact_id: the final artifact of a completed thread, else None.
        reused: whether the thread had completed before the run (or, in process, another
            process completed it: this run made no provider call for it).
        error_code: why a failed thread stopped (a catalogue code or ``GATE_FAILED``), else None.
        error_text: that error's message with its figures, else None.
        turns_run: turns whose latest attempt started during this run.
        turns_reused: completed turns of earlier runs this run did not repeat (and turns their
            branch skipped in an earlier run, whose decision stands).
        output_error: ``CODE: message`` when the completed thread's output could not be
            written (``RUN_OUTPUT_WRITE_FAILED``...), else None; the output stays in the CAS.
    """

    target: str
    path: str
    thread_id: str
    status: str
    output_path: str | None
    final_artifact_id: str | None
    reused: bool
    error_code: str | None = None
    error_text: str | None = None
    turns_run: int = 0
    turns_reused: int = 0
    output_error: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """What a run did, from the records: the CLI's report and exit status.

    Attributes:
        workflow_id: the profile's workflow.
        threads: one `ThreadSummary` per planned thread, in plan order.
        provider_calls: provider calls made by the run: this process's own count in process
            (`RuntimeEnv.provider_calls`), else `provider_calls_since` the run's start.
        threads_reused: threads that had completed before the run.
        recorded_answers: turns of the run answered from a recorded response to the same
            request instead of a provider call (`wf_pipeline.runtime.requests`).
        dagster_run_ids: the Dagster runs that executed the pending threads.
        out_dir: the folder the outputs went to: the tree's output folder, or its root
            when writing in place.
        in_place: whether the outputs were written into the tree itself.
        warnings: the scan's warnings, ``{"code", "path", "message"}`` each (entries skipped:
            links outside the root, loops, unreadable files...).
        root: the tree's root folder, None when unknown.
    """

    workflow_id: str
    threads: tuple[ThreadSummary, ...]
    provider_calls: int
    threads_reused: int
    dagster_run_ids: tuple[str, ...]
    out_dir: str | None
    warnings: tuple[dict[str, str], ...] = ()
    root: str | None = None
    in_place: bool = False
    recorded_answers: int = 0

    @property
    def ok(self) -> bool:
        """Whether every thread of the run completed and had its output written (true for a
        tree with nothing to document)."""
        return all(t.status == "completed" and t.output_error is None for t in self.threads)

    @property
    def counts(self) -> dict[str, int]:
        """Directories by outcome: ``documented`` (completed in this run), ``reused`` (completed
        before), ``failed``, ``unfinished`` (neither completed nor failed), ``written`` (outputs
        the sink wrote or found equal), ``output_failed`` (completed, output not written)."""
        completed = [t for t in self.threads if t.status == "completed"]
        return {
            "documented": sum(1 for t in completed if not t.reused),
            "reused": sum(1 for t in completed if t.reused),
            "failed": sum(1 for t in self.threads if t.status == "failed"),
            "unfinished": sum(1 for t in self.threads if t.status not in ("completed", "failed")),
            "written": sum(1 for t in self.threads if t.output_path),
            "output_failed": sum(1 for t in self.threads if t.output_error),
        }

    def to_json(self) -> dict:
        """The JSON-ready report: every attribute and `counts`, threads as dicts, tuples as lists."""
        return {
            "workflow_id": self.workflow_id,
            "root": self.root,
            "threads": [
                {
                    "target": t.target,
                    "path": t.path,
                    "thread_id": t.thread_id,
                    "status": t.status,
                    "output_path": t.output_path,
                    "final_artifact_id": t.final_artifact_id,
                    "reused": t.reused,
                    "error_code": t.error_code,
                    "error_text": t.error_text,
                    "turns_run": t.turns_run,
                    "turns_reused": t.turns_reused,
                    "output_error": t.output_error,
                }
                for t in self.threads
            ],
            "counts": self.counts,
            "provider_calls": self.provider_calls,
            "recorded_answers": self.recorded_answers,
            "threads_reused": self.threads_reused,
            "dagster_run_ids": list(self.dagster_run_ids),
            "out_dir": self.out_dir,
            "warnings": [dict(warning) for warning in self.warnings],
            "in_place": self.in_place,
        }


def provider_calls_since(env: RuntimeEnv, thread_ids: Iterable[str], since_ms: int) -> int:
    """Provider calls made for these threads since ``since_ms``, counted from the turn records.

    Args:
        env: the runtime (its record store is read).
        thread_ids: the threads to count.
        since_ms: Unix epoch in ms; attempts started earlier are not counted.

    Returns:
        The number of turn attempts with ``provider_called`` started at or after ``since_ms``.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    return sum(
        1
        for thread_id in thread_ids
        for turn in env.records.turns_for_thread(thread_id)
        if turn.provider_called and turn.started_at_ms >= since_ms
    )


def _write_output(
    env: RuntimeEnv, loaded: LoadedProfile, tree: TreeRecord, thread: ThreadRecord
) -> tuple[Path | None, str | None]:
    # One directory's output that cannot be written (a directory named like the output
    # file, a full disk) is that directory's failure, never the end of the report.
    try:
        return write_thread_output(env, loaded, tree, thread), None
    except WfError as exc:
        return None, str(exc)


def summarize_run(
    env: RuntimeEnv,
    plan: RunPlan,
    *,
    started_ms: int,
    dagster_run_ids: Iterable[str],
    replanned: bool = True,
) -> RunSummary:
    """Report every thread the run ran or reused, and make sure each completed one's output is written.

    The final turn's step already wrote the outputs of the threads it completed
    (`wf_pipeline.runtime.outputs`); the same function runs here for every completed
    thread, so reused threads' outputs reach a new output place too (equal files are
    left as they are). Where they go is the tree record's.

    Args:
        env: the runtime (records read, CAS read by the sink).
        plan: the run's plan (`plan_run`); its threads are planned again (`replan`) so the
            report names the threads that ran, parents included.
        started_ms: when the run started, Unix epoch in ms (turns run are counted from it;
            so are provider calls when the steps ran in other processes: in process, the
            env's own count of its calls is used, `RuntimeEnv.provider_calls`).
        dagster_run_ids: the Dagster runs that executed the plan.
        replanned: plan the threads again; False reports the plan's own threads (a
            resumed thread keeps its id whatever its children's outputs are now).

    Returns:
        The `RunSummary` of every planned thread.

    An output that cannot be written (``RUN_NO_OUTPUT_SINK``, ``RUN_OUTPUT_WRITE_FAILED``
    with the operating system's reason, the sink's ``CAS_NOT_FOUND`` /
    ``CAS_DIGEST_MISMATCH``) is that thread's ``output_error``; the other threads are
    still written and reported. A destination outside the root or through a symbolic
    link is not written (warning ``RUN_OUTPUT_OUTSIDE_ROOT``).

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    tree = tree_of(env, plan.scan.root)
    planned_reusable = {entry.thread.thread_id for entry in plan.threads if entry.reusable}
    current = (
        replan(env, plan.loaded, plan.scan, [entry.target for entry in plan.threads])
        if replanned
        else list(plan.threads)
    )
    # Steps of an in-process run count their calls on this env: then a thread that another
    # process completed meanwhile is reused here, and only this process's calls are counted.
    own_counts = env.settings.executor == "in_process"
    summaries = []
    recorded_answers = 0
    for entry in current:
        thread = env.records.get_thread(entry.thread.thread_id) or entry.thread
        artifact_id = (
            final_artifact_id(env, plan.loaded, thread.thread_id) if thread.status == "completed" else None
        )
        output_path, output_error = (
            _write_output(env, plan.loaded, tree, thread) if artifact_id else (None, None)
        )
        latest = env.records.latest_turns(thread.thread_id).values()
        turns_run = sum(1 for turn in latest if turn.started_at_ms >= started_ms)
        # Turns of this run answered from recorded responses: the thread ran, at no call.
        answered = sum(
            1 for turn in latest if turn.started_at_ms >= started_ms and turn.response_source == "recorded"
        )
        recorded_answers += answered
        summaries.append(
            ThreadSummary(
                target=entry.target.key,
                path=thread.target_path,
                thread_id=thread.thread_id,
                status=thread.status,
                output_path=str(output_path) if output_path else None,
                final_artifact_id=artifact_id,
                reused=thread.thread_id in planned_reusable
                or (
                    own_counts
                    and thread.status == "completed"
                    and not env.provider_calls[thread.thread_id]
                    and not answered
                ),
                error_code=thread.error_code if thread.status == "failed" else None,
                error_text=thread.error_text if thread.status == "failed" else None,
                turns_run=turns_run,
                # A turn its branch skipped in an earlier run is reused as decided.
                turns_reused=sum(
                    1
                    for turn in latest
                    if turn.started_at_ms < started_ms
                    and (turn.status == "completed" or skipped_by_branch(turn))
                ),
                output_error=output_error,
            )
        )
    return RunSummary(
        workflow_id=plan.loaded.profile.workflow_id,
        threads=tuple(summaries),
        provider_calls=sum(env.provider_calls.values())
        if own_counts
        else provider_calls_since(env, {t.thread.thread_id for t in (*plan.threads, *current)}, started_ms),
        threads_reused=sum(1 for t in summaries if t.reused),
        recorded_answers=recorded_answers,
        dagster_run_ids=tuple(dagster_run_ids),
        out_dir=str(output_directory(env, tree, ".")),
        in_place=tree.in_place,
        root=str(plan.scan.root),
    )


def next_ready_level(env: RuntimeEnv, loaded: LoadedProfile, root: Path) -> list[Target]:
    """The deepest depth level of a tree that still has work whose children are all settled.

    Returned whole (every target of that level, bottom-up order), since runs take
    contiguous partition ranges; finished threads in it are reused at no cost.

    Args:
        env: the runtime (records read and targets registered; nothing else written).
        loaded: the profile to run.
        root: the tree root, scanned afresh.

    Returns:
        The targets of that level in bottom-up order; empty when the tree is done or
        nothing can start yet.

    Raises:
        TreeError: the scan's codes (``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``,
            ``TREE_UNREADABLE``).
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    scan = scan_workspace(env, loaded, root)
    targets = register_targets(env.records, scan, loaded.profile.target_kind)
    identity = ThreadIdentity(env, loaded, scan)
    ready_depths = set()
    for target in targets:
        thread = plan_thread(env, loaded, target, identity).thread
        if thread.status in ("completed", "failed", "aborted"):
            continue
        if not unsettled_children(env, loaded, scan, target.path, identity):
            ready_depths.add(target_depth(target))
    if not ready_depths:
        return []
    deepest = max(ready_depths)
    return [target for target in targets if target_depth(target) == deepest]
