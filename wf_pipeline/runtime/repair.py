"""Checking every CAS object against its id, and regenerating corrupt ones from their turns.

`verify_store` reads every object, verifies its digest and quarantines the corrupt ones
(moved aside under the store's ``quarantine/``, never deleted). `repair_objects` then
asks the records which turns linked each corrupt object (artifact links: ``output``,
``input``, ``context`` and the prompt roles) and runs those turns again in this process,
deepest directories first, from the inputs recorded in the CAS: an output comes back
when its turn runs again (`run_turn` regenerates a missing output, and the producer of
a missing input first), a prompt or context artifact when its turn's inputs are
snapshotted again. What comes back under the same id is repaired; a turn that produced
other bytes (a model's new answer) has replaced it; the rest is reported with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from wf_pipeline.errors import CAS_DIGEST_MISMATCH, CAS_KEY_DESTROYED, CAS_NOT_FOUND, CasError, WfError
from wf_pipeline.metadata.records import ArtifactLinkRecord, ThreadRecord
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.runtime.branches import skipped_by_branch
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.integrity import GONE_ON_PURPOSE, UNUSABLE_OBJECT, usable_artifact
from wf_pipeline.runtime.targets import resolve_target
from wf_pipeline.runtime.threads import target_frame_id
from wf_pipeline.runtime.turn import restore_turn_artifacts, run_turn

# Progress callback: (objects checked, objects in total).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CorruptObject:
    """One object that cannot be used: its bytes no longer hash to its id, or (sealed) do not authenticate.

    Attributes:
        artifact_id: the id (``sha256:<hex>``).
        size: the stored size in bytes (as read; 0 when the read told none).
        quarantined_to: where the bytes were moved (inside the store), None if they vanished.
        code: why (`wf_pipeline.runtime.integrity.UNUSABLE_OBJECT`): ``CAS_DIGEST_MISMATCH``,
            ``CAS_DECRYPT_FAILED`` or ``CAS_NOT_ENCRYPTED``.
    """

    artifact_id: str
    size: int
    quarantined_to: str | None
    code: str = CAS_DIGEST_MISMATCH


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_store` found.

    Attributes:
        checked: objects read and verified.
        bytes_checked: their total size in bytes.
        corrupt: the corrupt objects, in id order, each quarantined.
        missing: ids the records refer to that the store does not hold (lost, or
            quarantined by an earlier check or run), in id order.
        shredded: stored objects whose KEK was destroyed (unreadable for good, on purpose),
            in id order; not counted in ``checked``.
    """

    checked: int
    bytes_checked: int
    corrupt: tuple[CorruptObject, ...]
    missing: tuple[str, ...] = ()
    shredded: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepairOutcome:
    """What became of one corrupt object.

    Attributes:
        artifact_id: the corrupt object's id.
        status: ``repaired`` (its turn gave the same bytes back, intact under the id),
            ``replaced`` (its turn ran again and produced other bytes, now the turn's
            output) or ``unrepaired``.
        reason: for ``unrepaired``: why, as ``CODE: message`` where an error says it.
        threads: the threads whose turns linked the object.
    """

    artifact_id: str
    status: str
    reason: str | None = None
    threads: tuple[str, ...] = field(default_factory=tuple)


def verify_store(env: RuntimeEnv, on_progress: Progress | None = None) -> VerifyReport:
    """Read every object of ``env.cas``, verify it against its id, quarantine the corrupt ones.

    Args:
        env: the runtime (its CAS is read; corrupt objects are moved to its quarantine).
        on_progress: called with (checked, total) as objects are read.

    Returns:
        A `VerifyReport`, with the ids the records refer to that the store lacks, except
        those retention deleted (they have a tombstone).

    Raises:
        CasError: ``CAS_BACKEND_ERROR`` when the store cannot be listed or read.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    ids = list(env.cas.iter_artifact_ids())
    # Each object is read as the class its links give it (a plaintext object of a class that
    # may rest in plaintext is intact); an object no record links is read at the strictest level.
    classes = {
        link.artifact_id: artifact_class
        for link in env.records.list_artifact_links()
        if (artifact_class := class_of_link(link.role, None)) is not None
    }
    total_bytes = 0
    corrupt: list[CorruptObject] = []
    shredded: list[str] = []
    for number, artifact_id in enumerate(ids, start=1):
        try:
            total_bytes += len(env.cas.get(artifact_id, artifact_class=classes.get(artifact_id)))
        except CasError as exc:
            if exc.code == CAS_KEY_DESTROYED:
                shredded.append(artifact_id)
                continue
            if exc.code == CAS_NOT_FOUND or exc.code in GONE_ON_PURPOSE:
                continue  # removed meanwhile (cleanup, a retention sweep, or another verify), or shredded
            if exc.code not in UNUSABLE_OBJECT:
                raise
            size = int(exc.details.get("actual_size") or 0)
            total_bytes += size
            corrupt.append(CorruptObject(artifact_id, size, env.cas.quarantine(artifact_id), exc.code))
        if on_progress is not None:
            on_progress(number, len(ids))
    present = set(ids) - {c.artifact_id for c in corrupt}
    lost = env.records.referenced_artifact_ids() - present - {c.artifact_id for c in corrupt}
    # Retention deleted these on purpose: their tombstones say so, nothing is to repair.
    missing = sorted(lost - set(env.records.tombstones_for(lost)))
    return VerifyReport(
        checked=len(ids) - len(shredded),
        bytes_checked=total_bytes,
        corrupt=tuple(corrupt),
        missing=tuple(missing),
        shredded=tuple(shredded),
    )


def repair_objects(env: RuntimeEnv, artifact_ids: Iterable[str]) -> list[RepairOutcome]:
    """Run again the turns that produced or linked each object, and report what came back.

    Args:
        env: the runtime (records and CAS read and written, its provider called for turns
            whose output must be produced again, its catalog gives the profiles).
        artifact_ids: the objects to bring back (quarantined or missing).

    Returns:
        One `RepairOutcome` per id, in the order given.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE`` when the links cannot be read. Errors while a
        thread runs again are reported in its objects' outcomes instead.
    """
    wanted = list(dict.fromkeys(artifact_ids))
    links = _links_by_artifact(env, set(wanted))
    by_thread: dict[str, list[ArtifactLinkRecord]] = {}
    for artifact_id in wanted:
        for link in links.get(artifact_id, []):
            by_thread.setdefault(link.thread_id, []).append(link)
    threads = {thread_id: env.records.get_thread(thread_id) for thread_id in by_thread}
    failures: dict[str, str] = {}
    # Deepest directories first: a parent's context embeds its children's outputs.
    order = sorted(by_thread, key=lambda t: (-_depth(threads[t]), t))
    for thread_id in order:
        problem = _rerun_thread(env, threads[thread_id], by_thread[thread_id])
        if problem is not None:
            failures[thread_id] = problem
    outcomes = []
    for artifact_id in wanted:
        linked = links.get(artifact_id, [])
        thread_ids = tuple(dict.fromkeys(link.thread_id for link in linked))
        outcomes.append(_outcome(env, artifact_id, linked, thread_ids, failures))
    return outcomes


def _outcome(
    env: RuntimeEnv,
    artifact_id: str,
    linked: list[ArtifactLinkRecord],
    thread_ids: tuple[str, ...],
    failures: Mapping[str, str],
) -> RepairOutcome:
    artifact_class = next((c for link in linked if (c := class_of_link(link.role, None)) is not None), None)
    if usable_artifact(env, artifact_id, artifact_class):
        return RepairOutcome(artifact_id, "repaired", threads=thread_ids)
    if not linked:
        return RepairOutcome(
            artifact_id, "unrepaired", "no record links it, so no turn can produce it again", thread_ids
        )
    problems = [failures[t] for t in thread_ids if t in failures]
    if problems:
        return RepairOutcome(artifact_id, "unrepaired", problems[0], thread_ids)
    producers = {(link.thread_id, link.turn_id) for link in linked if link.role == "output"}
    for thread_id, turn_id in producers:
        latest = env.records.latest_turns(thread_id).get(turn_id)
        if (
            latest is not None
            and latest.status == "completed"
            and latest.output_artifact_id not in (None, artifact_id)
            and usable_artifact(env, latest.output_artifact_id, artifact_class)
        ):
            return RepairOutcome(artifact_id, "replaced", threads=thread_ids)
    return RepairOutcome(
        artifact_id,
        "unrepaired",
        "its turns ran again but gave other bytes (their inputs changed since)",
        thread_ids,
    )


def _rerun_thread(
    env: RuntimeEnv, thread: ThreadRecord | None, links: list[ArtifactLinkRecord]
) -> str | None:
    """Run again the turns of ``thread`` up to the last one that linked a lost object; None when done."""
    if thread is None:
        return "the linking thread is no longer recorded"
    try:
        loaded = env.catalog.get(thread.workflow_id)
        target = resolve_target(env.records, thread.target_key)
        # The profile's code version is part of the thread's frame id (as `wf resume` checks).
        if thread.target_frame_id != target_frame_id(loaded):
            return (
                f"thread {thread.thread_id} was made by another version of {thread.workflow_id}; "
                "run the tree again with wf run"
            )
        prompt_turns = {link.turn_id for link in links if link.role != "output" and link.role != "input"}
        turns = loaded.profile.ordered_turns()
        linked_turns = {link.turn_id for link in links}
        last_seq = max((t.seq for t in turns if t.turn_id in linked_turns), default=0)
        for turn in turns:
            if turn.seq > last_seq:
                break
            history = env.records.latest_turns(thread.thread_id)
            recorded = history.get(turn.turn_id)
            if recorded is None or not (recorded.status == "completed" or skipped_by_branch(recorded)):
                break  # the thread never got this far: nothing of it to bring back
            current = env.records.get_thread(thread.thread_id) or thread
            # A turn its branch skipped keeps its decision unless the values it read changed
            # (`run_turn`: `wf_pipeline.runtime.branches.standing_skip`); the turns after it go on.
            output = run_turn(env, loaded, current, target, turn.turn_id)
            if output.not_taken:
                continue
            if output.status != "completed":
                return f"{output.error_code}: turn {turn.turn_id} of thread {thread.thread_id} ran again and failed"
            if turn.turn_id in prompt_turns:
                restore_turn_artifacts(
                    env, loaded, env.records.get_thread(thread.thread_id) or current, target, turn.turn_id
                )
    except WfError as exc:
        return f"{exc.code}: {exc.message}"
    return None


def _links_by_artifact(env: RuntimeEnv, wanted: set[str]) -> dict[str, list[ArtifactLinkRecord]]:
    found: dict[str, list[ArtifactLinkRecord]] = {}
    if not wanted:
        return found
    for thread in env.records.list_threads():
        for link in env.records.artifact_links_for_thread(thread.thread_id):
            if link.artifact_id in wanted:
                found.setdefault(link.artifact_id, []).append(link)
    return found


def _depth(thread: ThreadRecord | None) -> int:
    if thread is None or not thread.target_path or thread.target_path == ".":
        return 0
    return thread.target_path.count("/") + 1
