"""Thread identity, the context snapshot, and the children's outputs a directory sees.

A thread's identity is its profile's dedupe key plus three parts every thread holds:
the tree (`wf_pipeline.runtime.targets.tree_root_id`), the provider and model, and a
digest of its child directories' current outputs (each child's own current thread's
final artifact id, or none). So two trees that share a base name never share a thread,
switching the provider or model runs anew while switching back finds the earlier
threads, and a child whose output changed (it failed before and completed since, or
was regenerated) gives its parent a new thread with a fresh context. A parent's
identity is decided when its turn runs (its level starts), from the records then.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from wf_pipeline.errors import RUN_TARGET_CHANGED, RUN_UNKNOWN_THREAD, RunError
from wf_pipeline.metadata.canonical import canonical_json, canonical_text, digest, parse_json
from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.metadata.records import ThreadRecord, now_ms, thread_id_from_key
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.profiles.snapshot import SNAPSHOT_ROLE, profile_snapshot
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.integrity import usable_artifact
from wf_pipeline.runtime.masking import audit_unmasked_context, context_view, masked_payload
from wf_pipeline.runtime.targets import (
    Target,
    planned_directories,
    target_key_for,
    tree_output_dir,
    tree_root_id,
)
from wf_pipeline.security.audit_key import audit_key_source
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.tree import (
    TreeScan,
    build_context,
    build_tree_context,
    context_extractor,
    context_json_text,
    scan_tree,
)
from wf_pipeline.tree.context import fit_context

log = product_logger(__name__)


@dataclass(frozen=True)
class ThreadPlan:
    """What one directory's thread is, and whether a finished one can be reused.

    Attributes:
        target: the thread's target directory.
        node_id: the directory's Merkle node id in this scan.
        thread: the recorded thread, or the new pending one.
        reusable: the thread completed and its final artifact is still in the CAS.
        recorded: whether ``thread`` is in the record store.
        snapshot: for a new thread, the bytes of its profile snapshot
            (`wf_pipeline.profiles.snapshot`), whose id the thread records as
            ``profile_artifact_id``; None for a recorded thread.
    """

    target: Target
    node_id: str
    thread: ThreadRecord
    reusable: bool
    recorded: bool = True  # False for a new thread not saved yet
    snapshot: bytes | None = field(default=None, repr=False)

    def save_if_new(self, env: RuntimeEnv) -> ThreadRecord:
        """Save a new thread to ``env.records``, its profile snapshot first; a recorded one is left alone.

        The snapshot goes to the CAS before the thread row names it (a crash between leaves
        at worst an orphan object). The insert never replaces a row another process saved
        in the meantime (it may have run turns already): `RecordStore.add_thread`.

        Returns:
            The thread as recorded.

        Raises:
            CasError: ``CAS_BACKEND_ERROR`` storing the snapshot.
            RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        if self.recorded:
            return self.thread
        if self.snapshot is not None:
            env.cas.put(self.snapshot, artifact_class=class_of_link(SNAPSHOT_ROLE, None))
        return env.records.add_thread(self.thread)


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
    evidence for the next run. The tree's output folder (`wf run --out DIR`), when it lies
    inside the tree, is left out whole for the same reason. Symlinks that resolve outside the root are read only when
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
        skip_dirs=_output_dirs_inside(env, root),
    )


def _output_dirs_inside(env: RuntimeEnv, root: Path) -> tuple[str, ...]:
    # The outputs written there would otherwise become files of the tree: new evidence
    # and new node ids for the directories above them, so their threads would never settle.
    resolved = root.resolve()
    tree = env.records.get_tree(tree_root_id(resolved))
    if tree is None or tree.in_place:
        return ()
    out = tree_output_dir(tree, env.settings.out_dir).resolve()
    if out == resolved or not out.is_relative_to(resolved):
        return ()
    return ("/".join(out.relative_to(resolved).parts),)


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


def provider_identity(env: RuntimeEnv) -> str:
    """The provider part of a thread's identity: ``<provider type>:<model>`` of ``env.provider``."""
    return f"{env.provider.provider_type}:{env.provider.model}"


def thread_id_of(loaded: LoadedProfile, node_id: str, target: Target, identity: tuple[str, ...] = ()) -> str:
    """Thread identity from the profile's ``thread_policy.dedupe_key_fields`` and the identity parts.

    Args:
        loaded: the profile whose dedupe key applies.
        node_id: the target directory's current Merkle node id.
        target: the target directory (key and path, for keys that name them).
        identity: the parts every thread holds (`ThreadIdentity.parts`); empty for the
            dedupe key alone.

    Returns:
        ``thread:<24 hex>``.

    Raises:
        MetadataError: ``METADATA_UNKNOWN_THREAD_KEY_FIELD`` or
            ``METADATA_THREAD_KEY_INCOMPLETE`` for a key no loaded profile can have.
    """
    return thread_id_from_key(
        loaded.profile.thread_policy.dedupe_key_fields, thread_key_values(loaded, node_id, target), identity
    )


@dataclass
class ThreadIdentity:
    """The thread ids of one scan's directories as the records stand now, computed once per directory.

    Make a new one after threads may have finished (a new level, a new step): a
    directory's id depends on its children's outputs at the time it is computed.

    Attributes:
        env: the runtime (records and CAS read; its provider names the provider part).
        loaded: the profile.
        scan: the tree as scanned for this run.
    """

    env: RuntimeEnv
    loaded: LoadedProfile
    scan: TreeScan
    _ids: dict[str, str] = field(default_factory=dict, repr=False)
    _documentable: set[str] | None = field(default=None, repr=False)
    _snapshot: bytes | None = field(default=None, repr=False)

    def snapshot(self) -> bytes:
        """The profile snapshot new threads of this scan pin (`wf_pipeline.profiles.snapshot`), made once."""
        if self._snapshot is None:
            self._snapshot = profile_snapshot(self.loaded)
        return self._snapshot

    def target(self, path: str) -> Target:
        """The target of ``path`` in this scan (`target_key_for`; ``RUN_NAME_UNREPRESENTABLE``)."""
        return Target(key=target_key_for(self.scan.root, path), root=self.scan.root, path=path)

    def documentable(self) -> set[str]:
        """The scan's directories this profile runs on (`planned_directories` of its target kind)."""
        if self._documentable is None:
            self._documentable = set(planned_directories(self.scan, self.loaded.profile.target_kind))
        return self._documentable

    def parts(self, path: str) -> tuple[str, ...]:
        """The identity parts of ``path``'s thread: ``tree=``, ``provider=``, ``children=`` (a SHA-256 hex)."""
        outputs = sorted((child, artifact or "") for child, artifact in self.child_outputs(path).items())
        children = hashlib.sha256(canonical_json(outputs)).hexdigest()
        return (
            f"tree={tree_root_id(self.scan.root)}",
            f"provider={provider_identity(self.env)}",
            f"children={children}",
        )

    def thread_id(self, path: str, target: Target | None = None) -> str:
        """The id of ``path``'s thread for the tree and records as they are now (`thread_id_of`).

        Raises:
            RunError: ``RUN_NAME_UNREPRESENTABLE`` when ``target`` is None and the path
                has a name no partition key can hold.
            TreeError: ``TREE_NODE_NOT_FOUND`` when ``path`` is not in the scan.
            MetadataError: as `thread_id_of`.
            RecordError: ``RECORD_UNAVAILABLE``.
        """
        known = self._ids.get(path) or self._remembered(path)
        if known is None:
            # Children first, without recursion: a tree may be thousands of levels deep.
            for below in self._unknown_descendants(path):
                try:
                    self._ids[below] = self._compute(below, None)
                except RunError:
                    continue  # a name no key can hold: that directory has no thread
            known = self._compute(path, target)
            self._ids[path] = known
        return known

    def _memo_key(self, path: str) -> tuple[str, ...]:
        node_id = self.scan.node(path).node_id
        return (str(self.scan.root), path, node_id, target_frame_id(self.loaded), provider_identity(self.env))

    def _remembered(self, path: str) -> str | None:
        """The id of ``path``'s thread from an earlier computation in this env, if it is still completed.

        A completed thread's children had all finished before it ran (bottom-up), so its
        id stands while it stays completed: its subtree need not be walked again.
        """
        thread_id = self.env.completed_thread_ids.get(self._memo_key(path))
        if thread_id is None:
            return None
        thread = self.env.records.get_thread(thread_id)
        return thread_id if thread is not None and thread.status == "completed" else None

    def _remember(self, path: str, thread_id: str) -> None:
        thread = self.env.records.get_thread(thread_id)
        if thread is not None and thread.status == "completed":
            self.env.completed_thread_ids[self._memo_key(path)] = thread_id

    def _compute(self, path: str, target: Target | None) -> str:
        # Every documentable child's id is known here (`_unknown_descendants` order).
        node_id = self.scan.node(path).node_id
        thread_id = thread_id_of(self.loaded, node_id, target or self.target(path), self.parts(path))
        self._remember(path, thread_id)
        return thread_id

    def _unknown_descendants(self, path: str) -> list[str]:
        """Documentable directories below ``path`` whose id is not known yet, deepest first (post-order)."""
        order: list[str] = []
        stack = [child.path for child in self.scan.children_of(path) if child.kind == "dir"]
        while stack:
            current = stack.pop()
            if current in self._ids:
                continue
            remembered = self._remembered(current) if current in self.documentable() else None
            if remembered is not None:
                self._ids[current] = remembered  # its subtree is settled: not walked again
                continue
            order.append(current)
            stack.extend(child.path for child in self.scan.children_of(current) if child.kind == "dir")
        # Reversed pre-order puts every directory after all of its descendants.
        return [below for below in reversed(order) if below in self.documentable()]

    def child_outputs(self, path: str) -> dict[str, str | None]:
        """Child directory path -> final artifact id of its current thread, or None when it has none yet.

        Every direct child directory is listed, in scan order; one with nothing to
        document, or whose name no key can hold, has no thread and maps to None.
        """
        outputs: dict[str, str | None] = {}
        for child in self.scan.children_of(path):
            if child.kind != "dir":
                continue
            outputs[child.path] = None
            if child.path not in self.documentable():
                continue
            try:
                child_id = self.thread_id(child.path)
            except RunError:
                continue  # a name no key can hold: skipped at registration, so no thread
            thread = self.env.records.get_thread(child_id)
            if thread is not None and thread.status == "completed":
                outputs[child.path] = final_artifact_id(self.env, self.loaded, child_id)
        return outputs

    def child_threads(self, path: str) -> dict[str, ThreadRecord | None]:
        """Documentable child directory path -> its current thread's record, or None when not recorded."""
        threads: dict[str, ThreadRecord | None] = {}
        for child in self.scan.children_of(path):
            if child.kind != "dir" or child.path not in self.documentable():
                continue
            try:
                child_id = self.thread_id(child.path)
            except RunError:
                continue
            threads[child.path] = self.env.records.get_thread(child_id)
        return threads


def plan_thread(
    env: RuntimeEnv, loaded: LoadedProfile, target: Target, identity: ThreadIdentity
) -> ThreadPlan:
    """Find the thread for the target's identity now, or describe a new pending one (nothing is written).

    Args:
        env: the runtime (its record store and CAS are read).
        loaded: the profile; its ``dedupe_key_fields`` and the identity parts decide the
            thread id (`ThreadIdentity.thread_id`).
        target: the target directory.
        identity: the thread ids of the target's scan as the records stand now.

    Returns:
        A `ThreadPlan`: the recorded thread (``reusable`` when it completed and its final
        artifact is still in the CAS), or a new pending one with ``recorded=False``, its
        ``profile_version``, ``code_version`` and ``profile_artifact_id`` set and the
        snapshot's bytes in the plan (stored by `ThreadPlan.save_if_new`).

    Raises:
        TreeError: ``TREE_NODE_NOT_FOUND`` when the target is not in the scan.
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    node_id = identity.scan.node(target.path).node_id
    thread_id = identity.thread_id(target.path, target)
    existing = env.records.get_thread(thread_id)
    if existing is not None:
        return plan_for_thread(env, loaded, target, existing)
    profile = loaded.profile
    stamp = now_ms()
    # Version pinning: the thread records the profile it starts with, and resumes with it.
    snapshot = identity.snapshot() if identity.loaded is loaded else profile_snapshot(loaded)
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
        profile_version=profile.version,
        code_version=loaded.code_version,
        profile_artifact_id=digest(snapshot),
    )
    return ThreadPlan(
        target=target, node_id=node_id, thread=thread, reusable=False, recorded=False, snapshot=snapshot
    )


def plan_for_thread(
    env: RuntimeEnv, loaded: LoadedProfile, target: Target, thread: ThreadRecord
) -> ThreadPlan:
    """The plan entry of a recorded thread: ``reusable`` when it completed and its final artifact is in the CAS.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    reusable = thread.status == "completed" and final_artifact_id(env, loaded, thread.thread_id) is not None
    return ThreadPlan(target=target, node_id=thread.target_node_id, thread=thread, reusable=reusable)


def open_thread(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    target: Target,
    thread_id: str | None = None,
    scan: TreeScan | None = None,
    identity: ThreadIdentity | None = None,
) -> ThreadRecord:
    """The thread a turn works in: the named one (resume), or the one for the tree as it is now.

    A new thread is saved as ``pending`` before it is returned.

    Args:
        env: the runtime (its record store is read and written).
        loaded: the profile.
        target: the target directory.
        thread_id: the thread to resume; None for the thread of the tree as it is now.
        scan: the tree as scanned for this run; scanned afresh when None.
        identity: the thread ids of ``scan`` as the records stand now; made afresh when None.

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
    plan = plan_thread(env, loaded, target, identity or ThreadIdentity(env, loaded, scan))
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
    recorded = recorded_final_artifact_id(env, loaded, thread_id)
    output_class = class_of_link("output", final_output_type(loaded))
    return recorded if recorded is not None and usable_artifact(env, recorded, output_class) else None


def recorded_final_artifact_id(env: RuntimeEnv, loaded: LoadedProfile, thread_id: str) -> str | None:
    """The final turn's latest completed output as recorded, whether or not its bytes are stored.

    Args:
        env: the runtime (records read; the CAS is not).
        loaded: the thread's profile (which turn produces the final output).
        thread_id: the thread.

    Returns:
        The artifact id (``sha256:<hex>``), or None when the final turn has not completed.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    final_turn = next(t for t in loaded.profile.ordered_turns() if t.output_type == final_output_type(loaded))
    latest = env.records.latest_turns(thread_id).get(final_turn.turn_id)
    if latest is None or latest.status != "completed" or latest.output_artifact_id is None:
        return None
    return latest.output_artifact_id


def context_snapshot(
    env: RuntimeEnv, loaded: LoadedProfile, thread: ThreadRecord, target: Target, scan: TreeScan | None = None
) -> str:
    """Artifact id of the thread's context payload, built once and reused by every later turn.

    Reusing the recorded snapshot keeps retries and resumes on the same inputs even if the
    tree has changed since (a snapshot recorded unmasked while the profile now masks is
    replaced by its masked copy: `_masked_snapshot`). A new snapshot shows every text
    through the masked view of the profile's redaction policy (`wf_pipeline.runtime.masking`):
    secret-shaped values are replaced by placeholders before the payload is stored or
    rendered into any prompt, unless the profile opts ``context_payload`` out; such a
    context is audited first (`wf_pipeline.runtime.masking.audit_unmasked_context`). A
    recorded snapshot that is missing or corrupt (quarantined, `usable_artifact`) is built
    again from the tree. A new snapshot fits the profile's
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
        SecurityError: ``AUDIT_UNAVAILABLE`` when a context built unmasked cannot be audited
            (nothing is stored).
    """
    recorded = recorded_context_id(env, thread.thread_id)
    if recorded is not None and usable_artifact(env, recorded, class_of_link("context", None)):
        return _masked_snapshot(env, loaded, thread, recorded)
    # First turn, or the recorded snapshot is gone or corrupt: built from the tree, which
    # must still be the thread's (then the bytes, and so the id, come out the same).
    scan = scan or scan_workspace(env, loaded, target.root)
    node = scan.node(target.path)
    if node.node_id != thread.target_node_id:
        raise RunError(
            RUN_TARGET_CHANGED,
            f"target {target.key} changed since thread {thread.thread_id} was planned; run again",
        )
    policy = loaded.redaction
    view = context_view(policy)
    if loaded.profile.context.scope == "tree":
        # The whole subtree, each file as the workflow's extract (`context: {scope: tree}`).
        payload = build_tree_context(
            scan,
            target.path,
            max_bytes=loaded.profile.artifact_policy.max_context_bytes,
            extractor=context_extractor(frame_type_of(loaded)),
            view=view,
        )
    else:
        payload = build_context(
            scan,
            target.path,
            child_frames(env, loaded, scan, target.path),
            max_bytes=loaded.profile.artifact_policy.max_context_bytes,
            extractor=context_extractor(frame_type_of(loaded)),
            view=view,
        )
    # The children's outputs are part of the thread's identity: a context built from
    # other outputs than the id says would be reused under the wrong id.
    text = context_json_text(payload)
    if view is None:
        # Opted out of masking: audited before anything is stored or sent (AUDIT_UNAVAILABLE).
        data = canonical_text(text)
        audit_unmasked_context(
            env.records,
            policy,
            audit_key=audit_key_source(env.settings, env.records),
            workflow_id=loaded.workflow_id,
            thread_id=thread.thread_id,
            node_id=node.node_id,
            artifact_id=digest(data),
            size=len(data),
        )
    stored = env.cas.put_text(text, artifact_class=class_of_link("context", None))
    if view is not None:
        view.report(target.path, node.node_id)
    return stored.artifact_id


def _masked_snapshot(env: RuntimeEnv, loaded: LoadedProfile, thread: ThreadRecord, recorded: str) -> str:
    """``recorded``, or a masked copy of it when it holds a secret-shaped value its profile masks.

    A snapshot recorded before the profile masked contexts (an earlier release, or an opt-out
    since removed) is reused by retries and resumes; it must not reach a provider unmasked
    either. The copy is refitted to ``max_context_bytes`` (placeholders may be longer than
    values) and stored; its id replaces the recorded one from then on.

    Raises:
        CasError: ``CAS_DECODE_ERROR``, ``CAS_BACKEND_ERROR`` reading or storing the snapshot.
        MetadataError: ``METADATA_BUDGET_EXCEEDED`` when even the masked copy's names do not fit.
    """
    view = context_view(loaded.redaction)
    if view is None:
        return recorded
    context_class = class_of_link("context", None)
    payload = ContextPayload.model_validate(
        parse_json(env.cas.get_text(recorded, artifact_class=context_class))
    )
    masked = masked_payload(payload, view)
    if not view.masked:
        return recorded
    fitted = fit_context(
        masked,
        loaded.profile.artifact_policy.max_context_bytes,
        context_extractor(frame_type_of(loaded)),
    )
    stored = env.cas.put_text(context_json_text(fitted), artifact_class=context_class)
    log.warning(
        "context %s of thread %s was recorded unmasked: %d secret-shaped values masked, now %s",
        recorded,
        thread.thread_id,
        view.count,
        stored.artifact_id,
    )
    return stored.artifact_id


def unsettled_children(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    scan: TreeScan,
    path: str,
    identity: ThreadIdentity | None = None,
) -> list[str]:
    """Child directories whose thread for their current content has not finished yet.

    A directory's context includes its children's outputs, so its thread must not start
    before theirs have completed or failed (bottom-up order). Each child's thread is its
    current one (`ThreadIdentity.thread_id`), as `plan_thread` made it.

    Args:
        env: the runtime (its record store is read).
        loaded: the profile.
        scan: the tree as scanned for this run.
        path: the parent directory, relative to the scanned root.
        identity: the thread ids of ``scan`` as the records stand now; made afresh when None.

    Returns:
        Paths of the documentable child directories whose thread is missing or is neither
        completed, failed nor aborted; empty when the parent may start.

    Raises:
        TreeError: ``TREE_NODE_NOT_FOUND`` when ``path`` is not in the scan.
        MetadataError: as `thread_id_of`.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    identity = identity or ThreadIdentity(env, loaded, scan)
    return [
        child
        for child, thread in identity.child_threads(path).items()
        if thread is None or thread.status not in ("completed", "failed", "aborted")
    ]


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
    """Child directory path -> text of its current thread's final output (None if it has none).

    The same outputs the parent's identity digests (`ThreadIdentity.child_outputs`), so a
    context and the id it is recorded under always agree.

    Args:
        env: the runtime (records and CAS read).
        loaded: the profile.
        scan: the tree as scanned for this run.
        path: the parent directory, relative to the scanned root.

    Returns:
        Child path -> output text (decoded UTF-8) or None, for every direct child
        directory in scan order.

    A head frame whose artifact is missing or corrupt counts as none, with a warning
    (`usable_artifact` quarantines a corrupt one).

    Raises:
        CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_DECODE_ERROR`` when an
            output's artifact is missing or corrupt.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    outputs = ThreadIdentity(env, env.children_profile or loaded, scan).child_outputs(path)
    output_class = class_of_link("output", final_output_type(loaded))
    return {
        child: env.cas.get_text(artifact, artifact_class=output_class) if artifact else None
        for child, artifact in outputs.items()
    }
