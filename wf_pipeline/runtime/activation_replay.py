"""Replays of chained activations: re-judge each recorded activation of a tree from the records.

A recorded activation (`wf_pipeline.runtime.activations`) says which upstream threads an
edge's condition held on, and which run it started. Verifying it recomputes what the
activation sensor would record now, with the sensor's own functions (`current_threads`,
`condition_holds`, `activation_for`): the edge must still be declared, the tree's current
upstream threads must be the recorded ones (same ids, same digest), the condition must
still hold on them, and the activation id must come out the same. Each thing that differs
is one `FirstDifference`; the first of them, in that order, explains the divergence.

Only the latest activation of each edge on a tree is judged (as a tree's replay replays
each directory's latest thread): an earlier one was superseded when new upstream threads
activated the tree again, and it stays in the records as history. Nothing live is
written: the tree's targets are registered into a scratch store.

docs/specs/replays.md, docs/specs/chained-workflows-and-agents.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wf_pipeline.errors import WfError
from wf_pipeline.metadata.records import ActivationRecord
from wf_pipeline.records.scratch import ScratchRecordStore
from wf_pipeline.runtime.activations import activation_for, condition_holds, current_threads
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.replay import FirstDifference
from wf_pipeline.runtime.targets import tree_root_id
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

#: The class of an activation's divergence, beside the thread replay's `COMPARED` classes.
ACTIVATION_CLASS = "activation"


@dataclass(frozen=True)
class ActivationReplay:
    """One recorded activation, re-judged on the tree as it is now.

    Attributes:
        record: the recorded activation.
        actual_activation_id: the id the sensor would record now, None when it could not
            be computed (the upstream workflow or the edge is gone, the judgement failed).
        actual_digest: the digest of the tree's current upstream thread ids, None likewise.
        holds: whether the condition holds now, None likewise.
        differences: every difference from the record, in order (`replay_activation`);
            empty when it matched.
        superseded: earlier activations of the same edge and tree, not judged.
    """

    record: ActivationRecord
    actual_activation_id: str | None
    actual_digest: str | None
    holds: bool | None
    differences: tuple[FirstDifference, ...] = ()
    superseded: int = 0

    @property
    def matched(self) -> bool:
        """Whether recomputing the activation gave the recorded one."""
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        """Ids and digests: the edge, the expected (recorded) and actual digests and ids, the differences."""
        record = self.record
        return {
            "activation_id": record.activation_id,
            "artifact_class": ACTIVATION_CLASS,
            "source_workflow_id": record.source_workflow_id,
            "target_workflow_id": record.target_workflow_id,
            "condition": record.condition,
            "target_key": record.target_key,
            "matched": self.matched,
            "expected": record.threads_digest,
            "actual": self.actual_digest,
            "actual_activation_id": self.actual_activation_id,
            "holds": self.holds,
            "superseded": self.superseded,
            "first_difference": self.differences[0].to_json() if self.differences else None,
            "differences": [d.to_json() for d in self.differences],
        }


def tree_activations(env: RuntimeEnv, workflow_id: str, root: Path) -> list[tuple[ActivationRecord, int]]:
    """The latest recorded activation of each edge on the tree at ``root`` that ``workflow_id`` is on (either end).

    Args:
        env: the runtime (records read).
        workflow_id: the workflow replayed; an activation counts when it is its upstream or
            its activated workflow.
        root: the tree root (resolved here).

    Returns:
        (record, how many earlier activations of its edge and tree it superseded), by
        creation time then id.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    root_id = tree_root_id(root)
    latest: dict[tuple[str, str, str], ActivationRecord] = {}
    earlier: dict[tuple[str, str, str], int] = {}
    for record in env.records.list_activations():  # by created_at_ms, then id
        if record.tree_root_id != root_id or workflow_id not in (
            record.source_workflow_id,
            record.target_workflow_id,
        ):
            continue
        edge = (record.source_workflow_id, record.target_workflow_id, record.condition)
        if edge in latest:
            earlier[edge] = earlier.get(edge, 0) + 1
        latest[edge] = record
    return [(record, earlier.get(edge, 0)) for edge, record in latest.items()]


def replay_activation(env: RuntimeEnv, record: ActivationRecord, *, superseded: int = 0) -> ActivationReplay:
    """Re-judge ``record`` as the activation sensor would now, and say what differs.

    Differences, in this order: ``workflow`` (the upstream workflow is not loaded),
    ``edge`` (it no longer declares this target and condition), ``tree`` (the tree is not
    registered or its root is gone), ``error`` (judging it failed: the code), then each
    thread that differs, by directory (``thread_changed``, ``thread_added``,
    ``thread_removed``: expected and actual thread ids), ``condition`` (it no longer holds:
    the threads not completed) and ``activation_id`` (the same threads give another id:
    the target key changed).

    Args:
        env: the live runtime (records read; the tree's targets are registered into a
            scratch store, never the live one).
        record: the recorded activation.
        superseded: carried into the result (`tree_activations`).

    Returns:
        The `ActivationReplay`. Raises nothing: a failure to judge is an ``error`` difference.
    """
    loaded = env.catalog.profiles.get(record.source_workflow_id)
    edge = f"{record.source_workflow_id} -> {record.target_workflow_id} when {record.condition}"

    def failed(why: FirstDifference) -> ActivationReplay:
        return ActivationReplay(record, None, None, None, (why,), superseded)

    if loaded is None:
        return failed(
            FirstDifference(
                "workflow", record.source_workflow_id, None, "the upstream workflow is not loaded"
            )
        )
    if not any(
        entry.workflow == record.target_workflow_id and entry.when == record.condition
        for entry in loaded.profile.activates
    ):
        return failed(
            FirstDifference("edge", edge, None, "the upstream profile no longer declares this edge")
        )
    tree = env.records.get_tree(record.tree_root_id)
    if tree is None or not Path(tree.root_path).is_dir():
        return failed(
            FirstDifference("tree", record.tree_root_id, None, "the tree is not registered or is gone")
        )
    # The sensor's registration of targets goes to a scratch store: a replay writes nothing live.
    scratch = replace(env, records=ScratchRecordStore(env.records, ()))
    try:
        threads = current_threads(scratch, loaded, Path(tree.root_path))
    except WfError as exc:
        log.warning("%s: activation %s could not be judged", exc.code, record.activation_id)
        return failed(FirstDifference("error", None, exc.code, f"{exc.code}: {exc.message}"))
    holds = condition_holds(record.condition, threads)
    actual = activation_for(
        loaded,
        record.target_workflow_id,
        record.condition,
        tree,
        [thread_id for thread_id, _ in threads.values()],
    )
    differences = _thread_differences(env, record, threads)
    if not holds:
        waiting = sorted(
            f"{path}: {status}" for path, (_, status) in threads.items() if status != "completed"
        )
        shown = ", ".join(waiting[:10]) + (f" and {len(waiting) - 10} more" if len(waiting) > 10 else "")
        differences.append(
            FirstDifference(
                "condition",
                True,
                False,
                f"{record.condition} no longer holds: {len(waiting)} of {len(threads)} threads not completed"
                + (f" ({shown})" if shown else ""),
            )
        )
    if not differences and actual.activation_id != record.activation_id:
        differences.append(
            FirstDifference(
                "activation_id",
                record.activation_id,
                actual.activation_id,
                f"same threads, another id: target key {record.target_key} -> {actual.target_key}",
            )
        )
    return ActivationReplay(
        record, actual.activation_id, actual.threads_digest, holds, tuple(differences), superseded
    )


def _thread_differences(
    env: RuntimeEnv, record: ActivationRecord, threads: dict[str, tuple[str, str]]
) -> list[FirstDifference]:
    """Each directory whose current upstream thread is not the recorded one, by path."""
    recorded: dict[str, str] = {}
    unknown: list[str] = []
    for thread_id in record.thread_ids:
        thread = env.records.get_thread(thread_id)
        if thread is None:  # purged since: its directory is not known
            unknown.append(thread_id)
        else:
            recorded[thread.target_path] = thread_id
    current = {path: thread_id for path, (thread_id, _) in threads.items()}
    found: list[FirstDifference] = []
    for path in sorted(set(recorded) | set(current)):
        before, after = recorded.get(path), current.get(path)
        if before == after:
            continue
        if before is None:
            kind, detail = "thread_added", f"directory {path}: a thread the record does not hold"
        elif after is None:
            kind, detail = "thread_removed", f"directory {path}: no longer documented in the tree"
        else:
            kind, detail = "thread_changed", f"directory {path}: its current thread is another one"
        found.append(FirstDifference(kind, before, after, detail))
    found += [
        FirstDifference("thread_removed", thread_id, None, "a recorded thread no longer in the records")
        for thread_id in unknown
    ]
    return found
