"""Writing a thread's final output where its tree's outputs go: the one function every launch path uses.

`wf run`, `wf resume`, `wf backfill`, runs and backfills launched from the UI and runs a
sensor requests all end in the final turn's step, which writes each completed target's
output through the workflow's output sink (`wf_pipeline.runtime.sinks`); the CLI's run
summary calls the same function, which finds equal bytes already written. Where the
outputs go is the tree record's (`wf targets sync PATH --out DIR | --in-place`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from wf_pipeline.errors import CAS_ARTIFACT_EXPIRED, CAS_KEY_DESTROYED, CasError, WfError
from wf_pipeline.metadata.records import ThreadRecord, TreeRecord
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.retention.reads import expired_error
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.integrity import unusable_reason
from wf_pipeline.runtime.sinks import output_sink, write_declared_output
from wf_pipeline.runtime.targets import Target, kind_covers, register_tree, tree_output_dir, tree_root_id
from wf_pipeline.runtime.threads import final_output_type, frame_type_of, recorded_final_artifact_id
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)


def tree_of(env: RuntimeEnv, root: Path) -> TreeRecord:
    """The tree record of ``root``, registered with the default output place when missing.

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` (`register_tree`).
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    return env.records.get_tree(tree_root_id(root)) or register_tree(env.records, root, keep_outputs=True)


def output_directory(env: RuntimeEnv, tree: TreeRecord, target_path: str) -> Path:
    """Where the output of the directory ``target_path`` goes (`tree_output_dir` mirrored by path)."""
    base = tree_output_dir(tree, env.settings.out_dir)
    return base if target_path == "." else base.joinpath(*target_path.split("/"))


def write_thread_output(
    env: RuntimeEnv, loaded: LoadedProfile, tree: TreeRecord, thread: ThreadRecord
) -> Path | None:
    """Write a completed thread's final artifact through the profile's output sink, where ``tree`` says.

    Args:
        env: the runtime (records and CAS read; ``settings.out_dir`` is the default place).
        loaded: the thread's profile: its declared ``outputs`` are written when it has
            some (`wf_pipeline.runtime.sinks.write_declared_output`), else its frame type
            selects the sink.
        tree: the thread's tree record (its output place and overwrite choice).
        thread: the thread.

    Returns:
        The path written or already holding the same bytes; None when the thread has no
        final artifact (not completed, or its bytes are lost or were corrupt) or an
        existing, different in-place output was kept (the tree was synced without
        ``--overwrite``).

    Raises:
        CasError: ``CAS_ARTIFACT_EXPIRED`` when retention deleted the final artifact (its
            tombstone's class, policy, window and time in the message): expired, not
            "not produced yet"; ``CAS_KEY_DESTROYED`` when it was shredded; ``CAS_NOT_FOUND``,
            ``CAS_DIGEST_MISMATCH`` for the artifact.
        RunError: ``RUN_NO_OUTPUT_SINK`` when no workflow registered a sink for the frame
            type; ``RUN_OUTPUT_WRITE_FAILED`` with the operating system's reason when the
            file cannot be written (nothing is half-written).
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    if thread.status != "completed":
        return None
    artifact_id = recorded_final_artifact_id(env, loaded, thread.thread_id)
    if artifact_id is None:
        return None
    reason = unusable_reason(env, artifact_id, class_of_link("output", final_output_type(loaded)))
    if reason == CAS_ARTIFACT_EXPIRED:
        raise expired_error(env.records, artifact_id) or CasError(
            reason, f"{artifact_id} was deleted by retention"
        )
    if reason == CAS_KEY_DESTROYED:
        raise CasError(reason, f"{artifact_id} was shredded: its key was destroyed", artifact_id=artifact_id)
    if reason is not None:
        return None
    if loaded.profile.outputs:
        return _write_declared_outputs(env, loaded, tree, thread.target_path, artifact_id)
    sink = output_sink(frame_type_of(loaded))
    directory = output_directory(env, tree, thread.target_path)
    # Never outside the tree (in place) or the output folder, nor through links (the sink's check).
    return sink.write(
        env,
        artifact_id,
        directory,
        overwrite=tree.overwrite or not tree.in_place,
        root=tree_output_dir(tree, env.settings.out_dir),
    )


def _write_declared_outputs(
    env: RuntimeEnv, loaded: LoadedProfile, tree: TreeRecord, target_path: str, artifact_id: str
) -> Path | None:
    """Write the artifact to every output the profile declares; the first one's path is returned.

    ``mirrored`` outputs go where the tree's outputs go (`output_directory`), as a frame
    type's sink writes; ``in_place`` ones into the scanned tree itself, replacing a different file only
    when the tree was synced ``--in-place --overwrite``. Either way the write stays inside
    its root (the output folder, or the tree) and never goes through a link.
    """
    first: Path | None = None
    for index, spec in enumerate(loaded.profile.outputs or ()):
        if spec.placement == "in_place":
            root = Path(tree.root_path)
            base = root if target_path == "." else root.joinpath(*target_path.split("/"))
            overwrite = tree.overwrite
        else:
            root = tree_output_dir(tree, env.settings.out_dir)
            base = output_directory(env, tree, target_path)
            overwrite = tree.overwrite or not tree.in_place
        written = write_declared_output(
            env, artifact_id, base.joinpath(*spec.path.split("/")), overwrite=overwrite, root=root
        )
        if index == 0:
            first = written
    return first


def write_step_outputs(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    turn_id: str,
    targets: Sequence[Target],
    statuses: Mapping[str, tuple[str, str]],
) -> dict[str, Path | None]:
    """After the final turn's step: write the output of every target whose thread completed.

    A write that fails is logged as a warning with its code and does not fail the step:
    the thread's output stays in the CAS (`wf export` writes it later).

    Args:
        env: the runtime.
        loaded: the profile.
        turn_id: the step's turn; only the turn producing the final output writes.
        targets: the step's targets.
        statuses: target key -> (thread id, turn status) of the step's results.

    Returns:
        Target key -> path written (None when nothing was), for the targets written.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    if loaded.profile.turn(turn_id).output_type != final_output_type(loaded):
        return {}
    written: dict[str, Path | None] = {}
    for target in targets:
        thread_id, status = statuses.get(target.key, ("", ""))
        thread = env.records.get_thread(thread_id) if status == "completed" else None
        if thread is None:
            continue
        try:
            written[target.key] = write_thread_output(env, loaded, tree_of(env, target.root), thread)
        except WfError as exc:
            log.warning("%s", exc)
    return written


def latest_completed_threads(
    env: RuntimeEnv, loaded: LoadedProfile, tree: TreeRecord
) -> dict[str, ThreadRecord | None]:
    """The latest completed thread of every recorded target of ``tree``, read from the records only.

    What ``wf export`` writes: the tree on disk is not read, so a tree that has moved,
    been deleted or been edited since its last run still has the outputs of that run.

    Args:
        env: the runtime (records read).
        loaded: the workflow whose threads count.
        tree: the tree; its targets are the recorded ones whose key is the tree's key or
            starts with it and ``/`` (`wf_pipeline.runtime.targets.target_key_for`), and
            that the workflow's target kind covers (`wf_pipeline.runtime.targets.kind_covers`).

    Returns:
        Target path -> its completed thread with the newest ``updated_at_ms`` (None when
        the target has none yet), in the records' target order.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    prefix = tree.tree_key + "/"
    targets = [
        target
        for target in env.records.list_targets()
        if (target.target_key == tree.tree_key or target.target_key.startswith(prefix))
        # Targets are the tree's, not the workflow's: a root-only workflow has none below the root.
        and kind_covers(loaded.profile.target_kind, target.path)
    ]
    latest: dict[str, ThreadRecord] = {}
    for thread in env.records.list_threads(loaded.workflow_id, status="completed"):
        current = latest.get(thread.target_key)
        if current is None or thread.updated_at_ms > current.updated_at_ms:
            latest[thread.target_key] = thread
    return {target.path: latest.get(target.target_key) for target in targets}
