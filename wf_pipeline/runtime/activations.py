"""Chained activations: judge a profile's ``activates:`` conditions on a tree and record each activation.

The compiler's activation sensor (`wf_pipeline.compiler.sensors.activation_sensor`) calls
`due_activations` for every registered tree; each `Activation` it returns is recorded
once (`record_activation`, keyed by its id, which is also the Dagster run key), so a tree
and an upstream state start the activated workflow once, and a replay can tell which
upstream threads started which run. What each condition means is in
`wf_pipeline.profiles.activations`; docs/specs/chained-workflows-and-agents.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.metadata.canonical import canonical_json, digest, sha256_hex
from wf_pipeline.metadata.records import ActivationRecord, TreeRecord, now_ms
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.profiles.activations import ALL_THREADS_COMPLETED
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.targets import register_targets, tree_key_for
from wf_pipeline.runtime.threads import ThreadIdentity, plan_thread, scan_workspace

# Hex digits of the activation id: 128 bits, as other derived ids.
ACTIVATION_ID_HEX = 32


@dataclass(frozen=True)
class Activation:
    """One activation whose condition holds now: start ``target_workflow_id`` on ``target_key``.

    Attributes:
        activation_id: ``act-<32 hex>`` of every other field but the thread ids (their
            digest stands for them); the run key of the requested run.
        source_workflow_id, target_workflow_id, condition: the edge of the graph.
        tree_root_id: the tree; ``target_key``: its root's partition key.
        thread_ids: the upstream threads judged, sorted; ``threads_digest`` their digest.
    """

    activation_id: str
    source_workflow_id: str
    target_workflow_id: str
    condition: str
    tree_root_id: str
    target_key: str
    thread_ids: tuple[str, ...]
    threads_digest: str

    def to_record(self) -> ActivationRecord:
        """The `ActivationRecord` of this activation, stamped now."""
        return ActivationRecord(
            activation_id=self.activation_id,
            source_workflow_id=self.source_workflow_id,
            target_workflow_id=self.target_workflow_id,
            condition=self.condition,
            tree_root_id=self.tree_root_id,
            target_key=self.target_key,
            thread_ids=self.thread_ids,
            threads_digest=self.threads_digest,
            created_at_ms=now_ms(),
        )


def current_threads(env: RuntimeEnv, loaded: LoadedProfile, root: Path) -> dict[str, tuple[str, str]]:
    """Every documentable directory of the tree -> (its current thread id, that thread's status).

    The thread is the one for the tree's content now (`plan_thread`): a directory edited
    since its thread completed has a new, pending one. Nothing is written but the
    targets' registration.

    Args:
        env: the runtime (records read, targets registered).
        loaded: the workflow whose threads count.
        root: the tree root, scanned afresh.

    Returns:
        Target path -> (thread_id, status), ``pending`` for a thread not recorded yet.

    Raises:
        TreeError: the scan's codes. MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    scan = scan_workspace(env, loaded, root)
    identity = ThreadIdentity(env, loaded, scan)
    found: dict[str, tuple[str, str]] = {}
    for target in register_targets(env.records, scan):
        thread = plan_thread(env, loaded, target, identity).thread
        found[target.path] = (thread.thread_id, thread.status)
    return found


def condition_holds(condition: str, threads: dict[str, tuple[str, str]]) -> bool:
    """Whether ``condition`` holds for a tree whose current threads are ``threads`` (`current_threads`).

    ``all_threads_completed``: the tree has at least one thread and every one has completed.
    An unknown condition never holds (the loader refuses it: ``PROFILE_ACTIVATION_UNKNOWN_CONDITION``).
    """
    if condition == ALL_THREADS_COMPLETED:
        return bool(threads) and all(status == "completed" for _, status in threads.values())
    return False


def activation_for(
    loaded: LoadedProfile, target_workflow_id: str, condition: str, tree: TreeRecord, thread_ids: list[str]
) -> Activation:
    """The `Activation` of one edge on one tree for the upstream threads ``thread_ids``.

    Its id digests the edge, the tree and the sorted thread ids, so the same upstream
    state gives the same id (one run), and a new upstream state (a thread re-run after
    an edit) a new one.
    """
    ordered = tuple(sorted(thread_ids))
    threads_digest = digest(canonical_json(list(ordered)))
    key = {
        "source": loaded.workflow_id,
        "target": target_workflow_id,
        "condition": condition,
        "tree": tree.root_id,
        "threads": threads_digest,
    }
    return Activation(
        activation_id=f"act-{sha256_hex(canonical_json(key))[:ACTIVATION_ID_HEX]}",
        source_workflow_id=loaded.workflow_id,
        target_workflow_id=target_workflow_id,
        condition=condition,
        tree_root_id=tree.root_id,
        target_key=tree_key_for(Path(tree.root_path)),
        thread_ids=ordered,
        threads_digest=threads_digest,
    )


def due_activations(env: RuntimeEnv, loaded: LoadedProfile, tree: TreeRecord) -> list[Activation]:
    """The activations of ``loaded``'s ``activates:`` whose condition holds on ``tree`` now and are not recorded.

    Args:
        env: the runtime (records read, targets registered).
        loaded: the upstream workflow.
        tree: a registered tree; one whose root is gone has none.

    Returns:
        One `Activation` per entry that holds and whose id is not recorded yet, in entry order.

    Raises:
        TreeError: the scan's codes other than a missing root. MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    if not loaded.profile.activates or not Path(tree.root_path).is_dir():
        return []
    threads = current_threads(env, loaded, Path(tree.root_path))
    recorded = {record.activation_id for record in env.records.list_activations(loaded.workflow_id)}
    due = []
    for entry in loaded.profile.activates:
        if not condition_holds(entry.when, threads):
            continue
        activation = activation_for(
            loaded, entry.workflow, entry.when, tree, [thread_id for thread_id, _ in threads.values()]
        )
        if activation.activation_id not in recorded:
            due.append(activation)
    return due


def record_activation(env: RuntimeEnv, activation: Activation) -> bool:
    """Record ``activation``; True when this call recorded it, False when another already had.

    Raises:
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    _, inserted = env.records.add_activation(activation.to_record())
    return inserted
