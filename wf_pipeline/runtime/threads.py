"""Thread identity, the context snapshot, and the children's head frames a directory sees."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.errors import CAS_NOT_FOUND, RUN_TARGET_CHANGED, RUN_UNKNOWN_THREAD, RunError
from wf_pipeline.metadata.records import ThreadRecord, now_ms, thread_id_from_key
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.integrity import usable_artifact
from wf_pipeline.runtime.targets import Target, documentable_directories, target_key_for
from wf_pipeline.tree import TreeScan, build_context, context_extractor, context_json_text, scan_tree

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadPlan:
    """What one directory's thread is, and whether a finished one can be reused.

    Attributes:
        target: the thread's target directory.
        node_id: the directory's Merkle node id in this scan.
        thread: the recorded thread, or the new pending one.
        reusable: the thread completed and its final artifact is still in the CAS.
        recorded: whether ``thread`` is in the record store.
    """

    target: Target
    node_id: str
    thread: ThreadRecord
    reusable: bool
    recorded: bool = True  # False for a new thread not saved yet

    def save_if_new(self, env: RuntimeEnv) -> ThreadRecord:
        """Save a new thread to ``env.records``; a recorded one is left alone.

        The insert never replaces a row another process saved in the meantime (it may have
        run turns already): `RecordStore.add_thread`.

        Returns:
            The thread as recorded.

        Raises:
            RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        if not self.recorded:
            return env.records.add_thread(self.thread)
        return self.thread


def frame_type_of(loaded: LoadedProfile) -> str:
    """The frame type a thread of this profile produces: ``target_frame_type``, else its final output type.

    Args:
        loaded: the profile.

    Returns:
        The frame type, which also selects the output sink (`wf_pipeline.runtime.sinks`).
    """
    return loaded.profile.target_frame_type or final_output_type(loaded)


def final_output_type(loaded: LoadedProfile) -> str:
    """The output type of the thread's final artifact: ``final_artifact_type``, else the last turn's.

    Args:
        loaded: the profile.

    Returns:
        An output type that one of the profile's turns produces (the loader checks it).
    """
    profile = loaded.profile
    return profile.final_artifact_type or profile.ordered_turns()[-1].output_type


def scan_workspace(env: RuntimeEnv, loaded: LoadedProfile, root: Path) -> TreeScan:
    """Scan a tree the way every turn of this workflow sees it.

    The workflow's own outputs (frames of its type, e.g. files its output sink wrote in place) are
    left out, so writing them into the tree changes no node id and they never become
    evidence for the next run. Symlinks that resolve outside the root are read only when
    ``env.settings.follow_external_links`` is set; the launcher, its step processes and the
    sensor all take it from the settings, so they all see the same tree.

    Args:
        env: the runtime (its record store gives the frames to leave out).
        loaded: the profile (its frame type).
        root: the tree root.

    Returns:
        The `TreeScan` of ``root``.

    Raises:
        TreeError: ``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``, ``TREE_UNREADABLE``
            (`wf_pipeline.tree.scan_tree`).
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    return scan_tree(
        root,
        skip_contents=env.records.frame_artifact_ids(frame_type_of(loaded)),
        follow_external_links=env.settings.follow_external_links,
    )


def target_frame_id(loaded: LoadedProfile) -> str:
    """The frame a thread produces: its type at this profile's code version.

    Part of the default dedupe key, so editing a prompt (which changes the code version
    Dagster shows as stale) gives every target a new thread instead of reusing old outputs.

    Args:
        loaded: the profile (its frame type and code version).

    Returns:
        ``<frame type>@<code version>``.
    """
    return f"{frame_type_of(loaded)}@{loaded.code_version}"


def thread_key_values(loaded: LoadedProfile, node_id: str, target: Target) -> dict[str, str]:
    """Every field a dedupe key may name -> its value for this target.

    Args:
        loaded: the profile (gives workflow_id and, through its code version, the frame id).
        node_id: the target directory's current Merkle node id.
        target: the target (its partition key and its path below the tree root).

    Returns:
        A mapping over `wf_pipeline.metadata.records.THREAD_KEY_FIELDS`.
    """
    return {
        "workflow_id": loaded.profile.workflow_id,
        "target_node_id": node_id,
        "target_frame_id": target_frame_id(loaded),
        "target_key": target.key,
        "target_path": target.path,
    }


def thread_id_of(loaded: LoadedProfile, node_id: str, target: Target) -> str:
    """Thread identity from the profile's ``thread_policy.dedupe_key_fields``.

    Args:
        loaded: the profile whose dedupe key applies.
        node_id: the target directory's current Merkle node id.
        target: the target directory (key and path, for keys that name them).

    Returns:
        ``thread:<24 hex>``; for the key (workflow_id, target_node_id, target_frame_id)
        the same id as every earlier release, so existing homes keep their threads.

    Raises:
        MetadataError: ``METADATA_UNKNOWN_THREAD_KEY_FIELD`` or
            ``METADATA_THREAD_KEY_INCOMPLETE`` for a key no loaded profile can have.
    """
    return thread_id_from_key(
        loaded.profile.thread_policy.dedupe_key_fields, thread_key_values(loaded, node_id, target)
    )


def plan_thread(env: RuntimeEnv, loaded: LoadedProfile, target: Target, node_id: str) -> ThreadPlan:
    """Find the thread for the dedupe key, or describe a new pending one (nothing is written).

    Args:
        env: the runtime (its record store and CAS are read).
        loaded: the profile; its ``dedupe_key_fields`` decide the thread id (`thread_id_of`).
        target: the target directory.
        node_id: the target directory's current Merkle node id.

    Returns:
        A `ThreadPlan`: the recorded thread (``reusable`` when it completed and its final
        artifact is still in the CAS), or a new pending one with ``recorded=False``.

    Raises:
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    profile = loaded.profile
    thread_id = thread_id_of(loaded, node_id, target)
    existing = env.records.get_thread(thread_id)
    if existing is not None:
        reusable = existing.status == "completed" and final_artifact_id(env, loaded, thread_id) is not None
        return ThreadPlan(target=target, node_id=node_id, thread=existing, reusable=reusable)
    stamp = now_ms()
    thread = ThreadRecord(
        thread_id=thread_id,
        workflow_id=profile.workflow_id,
        target_node_id=node_id,
        target_frame_id=target_frame_id(loaded),
        target_key=target.key,
        target_path=target.path,
        status="pending",
        created_at_ms=stamp,
        updated_at_ms=stamp,
    )
    return ThreadPlan(target=target, node_id=node_id, thread=thread, reusable=False, recorded=False)


def open_thread(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    target: Target,
    thread_id: str | None = None,
    scan: TreeScan | None = None,
) -> ThreadRecord:
    """The thread a turn works in: the named one (resume), or the one for the tree as it is now.

    A new thread is saved as ``pending`` before it is returned.

    Args:
        env: the runtime (its record store is read and written).
        loaded: the profile.
        target: the target directory.
        thread_id: the thread to resume; None for the thread of the tree as it is now.
        scan: the tree as scanned for this run; scanned afresh when None.

    Returns:
        The thread's record.

    Raises:
        RunError: ``RUN_UNKNOWN_THREAD`` when ``thread_id`` names no recorded thread.
        TreeError: the scan's codes, or ``TREE_NODE_NOT_FOUND`` when the target
            directory is not in the scan.
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    if thread_id is not None:
        thread = env.records.get_thread(thread_id)
        if thread is None:
            raise RunError(RUN_UNKNOWN_THREAD, f"no thread {thread_id}")
        return thread
    scan = scan or scan_workspace(env, loaded, target.root)
    plan = plan_thread(env, loaded, target, scan.node(target.path).node_id)
    return plan.save_if_new(env)


def final_artifact_id(env: RuntimeEnv, loaded: LoadedProfile, thread_id: str) -> str | None:
    """The final artifact of a completed thread, if its bytes are still in the CAS, intact.

    A corrupt final artifact is quarantined with a warning (`usable_artifact`), so the
    thread is planned again instead of blocking its tree on every run.

    Args:
        env: the runtime (records read, the artifact read and verified).
        loaded: the thread's profile (which turn produces the final output).
        thread_id: the thread.

    Returns:
        The artifact id (``sha256:<hex>``) of the final turn's latest completed attempt,
        or None when that turn has not completed or its bytes are gone or corrupt.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
        CasError: ``CAS_BACKEND_ERROR``.
    """
    final_turn = next(t for t in loaded.profile.ordered_turns() if t.output_type == final_output_type(loaded))
    latest = env.records.latest_turns(thread_id).get(final_turn.turn_id)
    if latest is None or latest.status != "completed" or latest.output_artifact_id is None:
        return None
    return latest.output_artifact_id if usable_artifact(env, latest.output_artifact_id) else None


def context_snapshot(
    env: RuntimeEnv, loaded: LoadedProfile, thread: ThreadRecord, target: Target, scan: TreeScan | None = None
) -> str:
    """Artifact id of the thread's context payload, built once and reused by every later turn.

    Reusing the recorded snapshot keeps retries and resumes on the same inputs even if the
    tree has changed since. A recorded snapshot that is missing or corrupt (quarantined,
    `usable_artifact`) is built again from the tree. A new snapshot fits the profile's
    ``artifact_policy.max_context_bytes``, with the extractor the workflow registered for
    its frame type (`wf_pipeline.tree.build_context`).

    Args:
        env: the runtime (records read, CAS read and written).
        loaded: the profile (its frame type, for the children's head frames).
        thread: the thread.
        target: the thread's target directory.
        scan: the tree as scanned for this run; scanned afresh when None.

    Returns:
        The context payload's artifact id (``sha256:<hex>``).

    Raises:
        RunError: ``RUN_TARGET_CHANGED`` when the directory's node id is no longer the
            thread's (the tree changed since the thread was planned).
        TreeError: the scan's codes, ``TREE_NODE_NOT_FOUND``, ``TREE_CHANGED_DURING_RUN``
            (`wf_pipeline.tree.build_context`).
        MetadataError: ``METADATA_BUDGET_EXCEEDED`` when even the names of the directory's
            entries are over ``max_context_bytes``.
        CasError: as `child_frames`; ``CAS_BACKEND_ERROR`` when the snapshot cannot be stored.
    """
    recorded = recorded_context_id(env, thread.thread_id)
    if recorded is not None and usable_artifact(env, recorded):
        return recorded
    # First turn, or the recorded snapshot is gone or corrupt: built from the tree, which
    # must still be the thread's (then the bytes, and so the id, come out the same).
    scan = scan or scan_workspace(env, loaded, target.root)
    node = scan.node(target.path)
    if node.node_id != thread.target_node_id:
        raise RunError(
            RUN_TARGET_CHANGED,
            f"target {target.key} changed since thread {thread.thread_id} was planned; run again",
        )
    payload = build_context(
        scan,
        target.path,
        child_frames(env, loaded, scan, target.path),
        max_bytes=loaded.profile.artifact_policy.max_context_bytes,
        extractor=context_extractor(frame_type_of(loaded)),
    )
    return env.cas.put_text(context_json_text(payload)).artifact_id


def unsettled_children(env: RuntimeEnv, loaded: LoadedProfile, scan: TreeScan, path: str) -> list[str]:
    """Child directories whose thread for their current content has not finished yet.

    A directory's context includes its children's head frames, so its thread must not start
    before theirs have completed or failed (bottom-up order). Each child's thread is
    looked up under the profile's dedupe key (`thread_id_of`), as `plan_thread` made it.

    Args:
        env: the runtime (its record store is read).
        loaded: the profile.
        scan: the tree as scanned for this run.
        path: the parent directory, relative to the scanned root.

    Returns:
        Paths of the documentable child directories whose thread is missing or is neither
        completed, failed nor aborted; empty when the parent may start.

    Raises:
        TreeError: ``TREE_NODE_NOT_FOUND`` when ``path`` is not in the scan.
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    documentable = set(documentable_directories(scan))
    pending = []
    for child in scan.children_of(path):
        if child.kind != "dir" or child.path not in documentable:
            continue
        child_target = Target(key=target_key_for(scan.root, child.path), root=scan.root, path=child.path)
        thread = env.records.get_thread(thread_id_of(loaded, child.node_id, child_target))
        if thread is None or thread.status not in ("completed", "failed", "aborted"):
            pending.append(child.path)
    return pending


def recorded_context_id(env: RuntimeEnv, thread_id: str) -> str | None:
    """The context snapshot an earlier turn of the thread recorded, if any.

    Args:
        env: the runtime (its record store is read).
        thread_id: the thread.

    Returns:
        The context artifact id of the latest prompt link that has one, else None.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    # The latest: it differs from the first only when a lost snapshot was built again.
    for link in reversed(env.records.prompt_links_for_thread(thread_id)):
        if link.context_artifact_id is not None:
            return link.context_artifact_id
    return None


def child_frames(env: RuntimeEnv, loaded: LoadedProfile, scan: TreeScan, path: str) -> dict[str, str | None]:
    """Child directory path -> text of its head frame of the profile's frame type (None if none yet).

    Args:
        env: the runtime (records and CAS read).
        loaded: the profile (its frame type).
        scan: the tree as scanned for this run.
        path: the parent directory, relative to the scanned root.

    Returns:
        Child path -> head frame text (decoded UTF-8) or None, for every direct child
        directory in scan order.

    A head frame whose artifact is missing or corrupt counts as none, with a warning
    (`usable_artifact` quarantines a corrupt one).

    Raises:
        CasError: ``CAS_DECODE_ERROR`` for a head frame that is not UTF-8; ``CAS_BACKEND_ERROR``.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    frame_type = frame_type_of(loaded)
    frames: dict[str, str | None] = {}
    for child in scan.children_of(path):
        if child.kind != "dir":
            continue
        head = env.records.head_frame(child.node_id, frame_type)
        if head is not None and not usable_artifact(env, head.artifact_id):
            # The child's thread is planned again (its final output fails the same check);
            # meanwhile the parent is told the child has no frame rather than failing.
            log.warning(
                "%s: head frame %s of %s is missing or corrupt; the parent's context goes without it",
                CAS_NOT_FOUND,
                head.artifact_id,
                child.path,
            )
            head = None
        frames[child.path] = env.cas.get_text(head.artifact_id) if head is not None else None
    return frames
