"""Planning and applying a retention sweep: which artifacts have outlived their window, and deleting them.

`plan_retention` reads every reference the records hold to an artifact (artifact links
and prompt links), live in the record store or archived by compaction in Parquet
(`wf_pipeline.retention.archive`), gives each its class (`ROLE_CLASSES`) and its age (the
reference's ``created_at_ms``), and asks the workflow's policy
(`wf_pipeline.profiles.retention`) when it may go: the same windows judge an artifact
whether its thread's rows are live or archived. The safety rules (issue 9, item 8) then
keep, whatever the window says:

- every artifact a pending, running or failed-but-resumable thread refers to
  (`RESUMABLE_STATUSES`): its context snapshot, its turns' inputs and outputs, its
  prompt renders, so a resume finds them all;
- the output behind a current head frame, unless its workflow's policy says
  ``output_of_heads: expire``;
- everything a thread under hold refers to, and everything of a workflow under hold;
- artifacts a loaded profile names as a ``sha256:`` prompt ref.

Classes in ``shred`` mode (`wf_pipeline.profiles.retention`) lose their expired
artifacts by crypto-shredding instead (`wf_pipeline.retention.shred`): whole KEK
lineages (class, period) are destroyed once every artifact of the lineage may go, the
ones that may not (any rule above, or a longer window) being moved to the current KEK
first. The reference that decides an artifact's expiry (the one expiring last) decides
its mode. A shred-mode artifact stored in plaintext, or whose data key is under a KEK of
a class no policy shreds, is deleted the ordinary way; one whose lineage is not due yet
waits for it (kept as ``lineage``); one already shredded is not planned again.

`apply_retention` writes each batch's tombstones FIRST, in one committed transaction,
then deletes the batch's CAS objects. A crash between the two leaves tombstones whose
objects may still exist; the next sweep plans them again and finishes the delete, so no
object is ever gone without its tombstone. An already swept artifact (tombstone written,
object gone) is not planned again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from wf_pipeline.cas import ArtifactStore
from wf_pipeline.crypto.keyring import Keyring
from wf_pipeline.errors import (
    CAS_ARTIFACT_EXPIRED,
    CAS_NOT_FOUND,
    KEYS_MASTER_KEY_INVALID,
    CasError,
    KeysError,
)
from wf_pipeline.metadata.artifact_classes import artifact_class_of_role
from wf_pipeline.metadata.canonical import is_digest
from wf_pipeline.metadata.records import RESUMABLE_STATUSES, TombstoneRecord, now_ms
from wf_pipeline.profiles import ProfileCatalog
from wf_pipeline.profiles.retention import OUTPUT, RetentionPolicy, class_of_link
from wf_pipeline.records import RecordStore
from wf_pipeline.retention.archive import RecordArchive, json_id_list
from wf_pipeline.retention.shred import (
    DESTROYED,
    PlannedShred,
    ShredResult,
    apply_shreds,
    is_gone,
    lineage_of,
    plan_shreds,
    shred_lifetimes,
)
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.telemetry import Recorder

log = product_logger(__name__)

# The class of an artifact comes from the role a link gives it (`artifact_class_of_role`).
# ``input`` links are upstream outputs read by a later turn: they keep their thread's
# protection but take no part in windows (the producing turn's ``output`` link decides).
# Prompt-link columns and the link role of the artifact each names.
PROMPT_LINK_ROLES: tuple[tuple[str, str], ...] = (
    ("system_prompt_artifact_id", "system_prompt"),
    ("user_prompt_template_artifact_id", "prompt_template"),
    ("rendered_prompt_artifact_id", "rendered_prompt"),
    ("context_artifact_id", "context"),
)
# Why an artifact is kept, strongest first: an artifact kept for several reasons is
# counted under the first. ``lineage``: expired in shred mode, its KEK lineage not due yet.
KEEP_REASONS = ("hold", "resumable", "head", "profile", "no_policy", "unknown_thread", "window", "lineage")
EXPIRED = "expired"
# Tombstones per transaction and CAS deletes after it: large enough that a commit costs
# little per artifact, small enough that a crash leaves few tombstones ahead of deletes.
BATCH_SIZE = 1_000
# Concurrent deletes per batch: an unlink waits on the filesystem's journal far more than on
# Python, so several in flight cut a local sweep's wall time about tenfold (bench/p6_retention.py).
DELETE_WORKERS = 16

Progress = Callable[[int, int], None]
_UNSET: Any = object()


class _Thread(NamedTuple):
    """What the rules read of a thread, live (`ThreadRecord`) or archived (a Parquet row)."""

    thread_id: str
    workflow_id: str
    status: str


class _Link(NamedTuple):
    """One artifact link: (artifact, role, thread, turn, size in bytes, created_at_ms)."""

    artifact_id: str
    role: str
    thread_id: str
    turn_id: str
    size: int
    created_at_ms: int


class _PromptRef(NamedTuple):
    """One artifact a prompt link names: (artifact, link role, thread, turn, created_at_ms)."""

    artifact_id: str
    role: str
    thread_id: str
    turn_id: str
    created_at_ms: int


class RetentionEnv(Protocol):
    """What a sweep needs from the runtime (`wf_pipeline.runtime.RuntimeEnv` has all of it)."""

    records: RecordStore
    cas: ArtifactStore
    catalog: ProfileCatalog
    telemetry: Recorder


@dataclass(frozen=True)
class PlannedDeletion:
    """One artifact a sweep deletes, with the facts its tombstone records.

    Attributes:
        artifact_id: the artifact.
        artifact_class: the class whose window let it go (the reference that expires
            last decides, since every reference must allow the deletion).
        workflow_id, thread_id, turn_id: the reference that decided.
        policy: the policy's source (`RetentionPolicy.source`).
        window_ms: that class's window in ms.
        bytes: the object's size in bytes.
        reason: ``expired``.
    """

    artifact_id: str
    artifact_class: str
    workflow_id: str
    thread_id: str
    turn_id: str
    policy: str
    window_ms: int | None
    bytes: int
    reason: str = EXPIRED

    def tombstone(self, deleted_at_ms: int) -> TombstoneRecord:
        """The tombstone recording this deletion at ``deleted_at_ms`` (Unix epoch ms)."""
        return TombstoneRecord(
            artifact_id=self.artifact_id,
            artifact_class=self.artifact_class,
            workflow_id=self.workflow_id,
            policy=self.policy,
            window_ms=self.window_ms,
            reason=self.reason,
            bytes=self.bytes,
            deleted_at_ms=deleted_at_ms,
        )


@dataclass(frozen=True)
class GroupTotal:
    """Count and bytes of the deletions of one (artifact class, workflow) pair."""

    artifact_class: str
    workflow_id: str
    count: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """``{"artifact_class", "workflow_id", "count", "bytes"}``."""
        return {
            "artifact_class": self.artifact_class,
            "workflow_id": self.workflow_id,
            "count": self.count,
            "bytes": self.bytes,
        }


def group_totals(deletions: Iterable[PlannedDeletion]) -> list[GroupTotal]:
    """Deletions summed per (class, workflow), sorted by class then workflow."""
    counts: Counter[tuple[str, str]] = Counter()
    sizes: Counter[tuple[str, str]] = Counter()
    for item in deletions:
        key = (item.artifact_class, item.workflow_id)
        counts[key] += 1
        sizes[key] += item.bytes
    return [GroupTotal(cls, wf, counts[(cls, wf)], sizes[(cls, wf)]) for cls, wf in sorted(counts)]


@dataclass(frozen=True)
class RetentionPlan:
    """What a sweep at ``now_ms`` deletes, and how many referenced artifacts it keeps and why.

    Attributes:
        now_ms: the sweep's clock (Unix epoch ms).
        deletions: the artifacts to delete, in artifact id order.
        kept: keep reason (`KEEP_REASONS`) -> artifacts kept for it.
        shreds: the KEK lineages to destroy (shred mode), in (class, period) order.
        plaintext_in_shred_mode: artifact class -> expired artifacts of a shred-mode class
            that are deleted instead, having no data key (stored while encryption was off).
    """

    now_ms: int
    deletions: tuple[PlannedDeletion, ...]
    kept: Mapping[str, int] = field(default_factory=dict)
    shreds: tuple[PlannedShred, ...] = ()
    plaintext_in_shred_mode: Mapping[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Artifacts to delete."""
        return len(self.deletions)

    @property
    def bytes(self) -> int:
        """Bytes the deletions free."""
        return sum(item.bytes for item in self.deletions)

    def totals(self) -> list[GroupTotal]:
        """The deletions per (class, workflow): count and bytes."""
        return group_totals(self.deletions)

    def to_dict(self) -> dict[str, Any]:
        """``{"now_ms", "count", "bytes", "groups": [GroupTotal.to_dict()], "kept": {reason: count},
        "shreds": [PlannedShred.to_dict()], "shredded_artifacts", "plaintext_in_shred_mode": {class: count}}``.

        ``count`` and ``bytes`` are deletions only; shredded artifacts free no bytes (their
        objects stay). Ids and counts only, no key material.
        """
        return {
            "now_ms": self.now_ms,
            "count": self.count,
            "bytes": self.bytes,
            "groups": [group.to_dict() for group in self.totals()],
            "kept": dict(self.kept),
            "shreds": [shred.to_dict() for shred in self.shreds],
            "shredded_artifacts": sum(shred.artifacts for shred in self.shreds),
            "plaintext_in_shred_mode": dict(self.plaintext_in_shred_mode),
        }


@dataclass(frozen=True)
class RetentionResult:
    """What `apply_retention` did.

    Attributes:
        now_ms: the sweep's clock (Unix epoch ms).
        deleted: CAS objects deleted (counted per planned artifact).
        bytes_freed: their bytes.
        tombstones_written: tombstones committed (one per deleted artifact).
        groups: the deletions per (class, workflow).
        kept: keep reason -> artifacts kept, as planned.
        shredded: one `ShredResult` per planned lineage (destroyed or deferred).
        plaintext_in_shred_mode: class -> shred-mode artifacts deleted for want of a data key.
    """

    now_ms: int
    deleted: int
    bytes_freed: int
    tombstones_written: int
    groups: tuple[GroupTotal, ...]
    kept: Mapping[str, int]
    shredded: tuple[ShredResult, ...] = ()
    plaintext_in_shred_mode: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"now_ms", "deleted", "bytes_freed", "tombstones_written", "groups", "kept", "shredded":
        [ShredResult.to_dict()], "shredded_lineages", "shredded_artifacts", "moved_keys",
        "deferred_lineages", "plaintext_in_shred_mode"}``: counts of destroyed lineages, of the
        data keys they wrapped and of keys moved out first. Ids and counts only."""
        destroyed = [item for item in self.shredded if item.status == DESTROYED]
        return {
            "now_ms": self.now_ms,
            "deleted": self.deleted,
            "bytes_freed": self.bytes_freed,
            "tombstones_written": self.tombstones_written,
            "groups": [group.to_dict() for group in self.groups],
            "kept": dict(self.kept),
            "shredded": [item.to_dict() for item in self.shredded],
            "shredded_lineages": len(destroyed),
            "shredded_artifacts": sum(item.artifacts for item in destroyed),
            "moved_keys": sum(item.moved for item in self.shredded),
            "deferred_lineages": len(self.shredded) - len(destroyed),
            "plaintext_in_shred_mode": dict(self.plaintext_in_shred_mode),
        }


class _Verdict:
    """Everything the references of one artifact say, folded as they are read."""

    __slots__ = ("keep", "expires_at", "decider", "size")

    def __init__(self) -> None:
        self.keep: str | None = None
        self.expires_at = -1
        self.decider: tuple[str, str, str, str, RetentionPolicy] | None = None
        self.size: int | None = None

    def protect(self, reason: str) -> None:
        if self.keep is None or KEEP_REASONS.index(reason) < KEEP_REASONS.index(self.keep):
            self.keep = reason


def plan_retention(env: RetentionEnv, *, now_ms: int, archive: RecordArchive | None = None) -> RetentionPlan:
    """The artifacts whose every reference has outlived its class window (plus grace) at ``now_ms``.

    An artifact is content-addressed, so several threads, turns and classes may refer to
    the same object: it is deleted only if EVERY reference allows it, i.e. the longest
    window wins, and any reference protected by a safety rule keeps it.

    Archived threads (``archive``) count like live ones: their artifact and prompt links
    are references with their class, age and thread, judged by the same rule; a hold on
    an archived thread's id or workflow protects them; where a thread is both live and
    archived (a compaction that left it in place), its live row is the truth. The
    archive is read after the record store: compaction writes a thread's archive files
    before it deletes its rows, so a thread archived during the plan is seen at least
    once. Each archived table is read once, only the columns the rules need.

    Args:
        env: the record store, the CAS (sizes of prompt-only references, whether a
            tombstoned object is still there) and the profiles (one policy per workflow;
            a workflow without a loaded profile keeps everything).
        now_ms: the sweep's clock, Unix epoch ms.
        archive: the record archive (``$WF_HOME/archive``); None reads live records only.

    Shred-mode classes: see the module docstring and `wf_pipeline.retention.shred`; the
    plan reads the keyring's records (KEKs, data keys) and writes nothing there either.

    Returns:
        The `RetentionPlan`. Nothing is written.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``.
        CasError: ``CAS_BACKEND_ERROR``.
        RetentionError: ``RETENTION_ARCHIVE_ERROR`` (an archive file cannot be read).
    """
    records = env.records
    threads = {t.thread_id: _Thread(t.thread_id, t.workflow_id, t.status) for t in records.list_threads()}
    policies = {workflow_id: loaded.retention for workflow_id, loaded in env.catalog.profiles.items()}
    holds = records.active_holds()
    held_threads = {hold.thread_id for hold in holds if hold.thread_id}
    held_workflows = {hold.workflow_id for hold in holds if hold.workflow_id}
    verdicts: dict[str, _Verdict] = {}
    lifetimes: dict[tuple[str, str], int | None] = {}

    def verdict(artifact_id: str) -> _Verdict:
        found = verdicts.get(artifact_id)
        if found is None:
            found = verdicts[artifact_id] = _Verdict()
        return found

    def thread_protection(thread: _Thread | None) -> str | None:
        if thread is None:
            return "unknown_thread"
        if thread.thread_id in held_threads or thread.workflow_id in held_workflows:
            return "hold"
        if thread.status in RESUMABLE_STATUSES:
            return "resumable"
        if thread.workflow_id not in policies:
            return "no_policy"
        return None

    def refer(
        artifact_id: str, artifact_class: str | None, thread_id: str, turn_id: str, created_at_ms: int
    ) -> _Verdict:
        entry = verdict(artifact_id)
        thread = threads.get(thread_id)
        protection = thread_protection(thread)
        if protection is not None:
            entry.protect(protection)
            return entry
        if artifact_class is None:  # an input link: protected with its thread, no window of its own
            return entry
        assert thread is not None
        policy = policies[thread.workflow_id]
        lifetime = lifetimes.get((thread.workflow_id, artifact_class), _UNSET)
        if lifetime is _UNSET:  # window + grace, once per (workflow, class)
            lifetime = lifetimes[(thread.workflow_id, artifact_class)] = policy.expires_at_ms(
                artifact_class, 0
            )
        expires = None if lifetime is None else created_at_ms + lifetime
        if expires is None or expires > now_ms:
            entry.protect("window")
        elif expires > entry.expires_at:
            entry.expires_at = expires
            entry.decider = (artifact_class, thread.workflow_id, thread_id, turn_id, policy)
        return entry

    output_classes: dict[tuple[str, str], str | None] = {}  # (thread, turn) -> class, looked up once

    def take_links(links: Iterable[_Link]) -> None:
        for link in links:
            artifact_class = artifact_class_of_role(link.role)
            if artifact_class == OUTPUT:
                key = (link.thread_id, link.turn_id)
                if key not in output_classes:
                    output_type = _output_type_of(env.catalog, threads.get(link.thread_id), link.turn_id)
                    output_classes[key] = class_of_link(link.role, output_type)
                artifact_class = output_classes[key]
            entry = refer(link.artifact_id, artifact_class, link.thread_id, link.turn_id, link.created_at_ms)
            entry.size = link.size

    def take_prompts(refs: Iterable[_PromptRef]) -> None:
        for ref in refs:
            refer(
                ref.artifact_id,
                artifact_class_of_role(ref.role),
                ref.thread_id,
                ref.turn_id,
                ref.created_at_ms,
            )

    take_links(
        _Link(link.artifact_id, link.role, link.thread_id, link.turn_id, link.size, link.created_at_ms)
        for link in records.list_artifact_links()
    )
    take_prompts(
        ref
        for prompt in records.list_prompt_links()
        for ref in _prompt_refs(
            prompt.thread_id,
            prompt.turn_id,
            prompt.created_at_ms,
            [getattr(prompt, column) for column, _ in PROMPT_LINK_ROLES],
        )
    )
    # A resumable thread also reads turn inputs and outputs that no link may name.
    for thread in threads.values():
        if thread.status in RESUMABLE_STATUSES:
            for turn in records.turns_for_thread(thread.thread_id):
                for artifact_id in (*turn.input_artifact_ids, turn.output_artifact_id):
                    if artifact_id is not None:
                        verdict(artifact_id).protect(thread_protection(thread) or "resumable")

    if archive is not None:  # after the live rows: see the docstring
        live = set(threads)
        for thread in _archived_threads(archive):
            threads.setdefault(thread.thread_id, thread)  # a live row wins
        take_links(_archived_links(archive))
        take_prompts(_archived_prompt_refs(archive))
        resumable = {
            thread_id
            for thread_id, thread in threads.items()
            if thread_id not in live and thread.status in RESUMABLE_STATUSES
        }
        for thread_id, artifact_id in _archived_turn_refs(archive, resumable):
            verdict(artifact_id).protect(thread_protection(threads[thread_id]) or "resumable")
    for frame in records.head_frames():
        thread = threads.get(frame.thread_id)
        policy = policies.get(thread.workflow_id) if thread else None
        if policy is None or policy.output_of_heads != "expire":
            verdict(frame.artifact_id).protect("head")
    for loaded in env.catalog.profiles.values():
        for turn in loaded.profile.turns:
            for ref in (turn.prompt_ref, turn.system_prompt_ref):
                if ref is not None and is_digest(ref):
                    verdict(ref).protect("profile")

    kept: Counter[str] = Counter()
    candidates: dict[str, _Verdict] = {}
    for artifact_id, entry in verdicts.items():
        if entry.keep is not None:
            kept[entry.keep] += 1
        elif entry.decider is not None:
            candidates[artifact_id] = entry
    shreds: list[PlannedShred] = []
    plaintext: Counter[str] = Counter()
    deletable = candidates
    shredding = set(shred_lifetimes(policies))  # classes whose lineages a sweep may destroy
    if shredding:
        shred_bound, plaintext = _shred_bound(records, candidates, shredding)
        deletable = {a: entry for a, entry in candidates.items() if a not in shred_bound}
        shreds = plan_shreds(records, policies, candidates, now_ms=now_ms)
        in_lineages = {artifact_id for shred in shreds for artifact_id in shred.artifact_ids}
        kept["lineage"] += sum(1 for a in shred_bound if shred_bound[a] and a not in in_lineages)
    deletions = _still_stored(env, deletable)
    return RetentionPlan(
        now_ms=now_ms,
        deletions=tuple(deletions),
        kept={reason: kept[reason] for reason in KEEP_REASONS if kept[reason]},
        shreds=tuple(shreds),
        plaintext_in_shred_mode=dict(sorted(plaintext.items())),
    )


def _shred_bound(
    records: RecordStore, candidates: Mapping[str, _Verdict], shredding: set[str]
) -> tuple[dict[str, bool], Counter[str]]:
    """Which expired artifacts go by shredding, not by deletion, and the shred-mode ones that cannot.

    Returns ``(artifact -> whether it still waits for its lineage, class -> plaintext count)``.
    An artifact is shred-bound when its deciding reference's policy shreds its class and it
    has a data key under a KEK of a class in ``shredding`` (some policy shreds it with a
    finite window, so its lineages do come due): ``True`` while that KEK holds
    material (its lineage takes it, now or later), ``False`` when the KEK is gone already
    (shredded before: nothing left to do). A shred-mode artifact without a data key (stored
    in plaintext) is counted per class and deleted; so is one whose KEK is unknown to the
    keyring or of a class outside ``shredding`` (its lineage would never be destroyed).
    """
    wanted: list[str] = []
    for artifact_id, entry in candidates.items():
        assert entry.decider is not None
        artifact_class, _, _, _, policy = entry.decider
        if policy.shreds(artifact_class):
            wanted.append(artifact_id)
    bound: dict[str, bool] = {}
    plaintext: Counter[str] = Counter()
    if not wanted:
        return bound, plaintext
    keks = {kek.kek_id: kek for kek in records.list_keks()}
    for start in range(0, len(wanted), BATCH_SIZE):
        chunk = wanted[start : start + BATCH_SIZE]
        keys = records.data_keys_for(chunk)
        for artifact_id in chunk:
            row = keys.get(artifact_id)
            if row is None:
                decider = candidates[artifact_id].decider
                assert decider is not None
                plaintext[decider[0]] += 1
                continue
            kek = keks.get(row.kek_id)
            if kek is None or lineage_of(kek).artifact_class not in shredding:
                continue
            bound[artifact_id] = not is_gone(kek)
    return bound, plaintext


def _prompt_refs(
    thread_id: str, turn_id: str, created_at_ms: int, artifact_ids: Iterable[str | None]
) -> Iterator[_PromptRef]:
    """The artifacts one prompt link names, its columns' values in `PROMPT_LINK_ROLES` order."""
    for (_, role), artifact_id in zip(PROMPT_LINK_ROLES, artifact_ids, strict=True):
        if artifact_id:
            yield _PromptRef(artifact_id, role, thread_id, turn_id, created_at_ms)


def _archived_threads(archive: RecordArchive) -> Iterator[_Thread]:
    """Archived threads, each as of its latest archived row (a thread archived twice has two)."""
    latest: dict[str, tuple[int, _Thread]] = {}
    for cols in archive.read_columns("threads", ("thread_id", "workflow_id", "status", "updated_at_ms")):
        for thread_id, workflow_id, status, updated in zip(
            cols["thread_id"], cols["workflow_id"], cols["status"], cols["updated_at_ms"], strict=True
        ):
            seen = latest.get(thread_id)
            if seen is None or updated >= seen[0]:
                latest[thread_id] = (updated, _Thread(thread_id, workflow_id, status))
    return (thread for _, thread in latest.values())


def _archived_links(archive: RecordArchive) -> Iterator[_Link]:
    """Every archived artifact link (a thread archived twice repeats its links; folding them is idempotent)."""
    for cols in archive.read_columns("artifact_links", _Link._fields):
        yield from map(_Link, *(cols[name] for name in _Link._fields))


def _archived_prompt_refs(archive: RecordArchive) -> Iterator[_PromptRef]:
    """Every artifact an archived prompt link names."""
    columns = [column for column, _ in PROMPT_LINK_ROLES]
    for cols in archive.read_columns("prompt_links", ("thread_id", "turn_id", "created_at_ms", *columns)):
        for row in zip(
            cols["thread_id"],
            cols["turn_id"],
            cols["created_at_ms"],
            *(cols[c] for c in columns),
            strict=True,
        ):
            yield from _prompt_refs(row[0], row[1], row[2], row[3:])


def _archived_turn_refs(archive: RecordArchive, thread_ids: set[str]) -> Iterator[tuple[str, str]]:
    """(thread, artifact) for the inputs and outputs of the archived turns of ``thread_ids``."""
    if not thread_ids:
        return
    for cols in archive.read_columns("turns", ("thread_id", "input_artifact_ids", "output_artifact_id")):
        for thread_id, inputs, output in zip(
            cols["thread_id"], cols["input_artifact_ids"], cols["output_artifact_id"], strict=True
        ):
            if thread_id in thread_ids:
                for artifact_id in (*json_id_list(inputs), output):
                    if artifact_id:
                        yield thread_id, artifact_id


def _output_type_of(catalog: ProfileCatalog, thread: _Thread | None, turn_id: str) -> str | None:
    """The output type of a thread's turn in its loaded profile; None when no profile has that turn."""
    loaded = catalog.profiles.get(thread.workflow_id) if thread is not None else None
    if loaded is None:
        return None
    try:
        return loaded.profile.turn(turn_id).output_type
    except KeyError:  # a turn the current profile no longer has
        return None


def _still_stored(env: RetentionEnv, candidates: Mapping[str, _Verdict]) -> list[PlannedDeletion]:
    """The candidates as deletions, minus those already swept (tombstone written, object gone).

    Sizes come from the links; an artifact only prompt links name is sized by a ``stat``.
    """
    tombstoned = env.records.tombstones_for(candidates)
    deletions = []
    for artifact_id in sorted(candidates):
        entry = candidates[artifact_id]
        size = entry.size
        if artifact_id in tombstoned or size is None:
            try:
                size = env.cas.stat(artifact_id).size
            except CasError as exc:
                # The runtime's store reports a tombstoned, missing object as expired (retention.reads).
                if exc.code not in (CAS_NOT_FOUND, CAS_ARTIFACT_EXPIRED):
                    raise
                continue  # already gone: swept before, or never stored
        assert entry.decider is not None
        artifact_class, workflow_id, thread_id, turn_id, policy = entry.decider
        deletions.append(
            PlannedDeletion(
                artifact_id=artifact_id,
                artifact_class=artifact_class,
                workflow_id=workflow_id,
                thread_id=thread_id,
                turn_id=turn_id,
                policy=policy.source,
                window_ms=policy.window_ms(artifact_class),
                bytes=size,
            )
        )
    return deletions


def apply_retention(
    env: RetentionEnv,
    *,
    now_ms: int,
    on_progress: Progress | None = None,
    archive: RecordArchive | None = None,
    keyring: Keyring | None = None,
) -> RetentionResult:
    """Plan a sweep at ``now_ms`` and carry it out: tombstones first, then the CAS deletes, per batch; then the shreds.

    Each batch of `BATCH_SIZE` artifacts commits its tombstones in one transaction, then
    deletes their objects (`DELETE_WORKERS` at a time) and records one telemetry row per deletion (outcome
    ``expired``). Killed at any point, it leaves every deleted object with its tombstone;
    run again, it finishes what the kill interrupted.

    Args:
        env: as `plan_retention`; its ``telemetry`` recorder gets one row per deletion.
        now_ms: the sweep's clock, Unix epoch ms.
        on_progress: called with (artifacts done, artifacts planned) after each batch.
        archive: as `plan_retention`: archived threads' artifacts expire like live ones.
        keyring: the keyring the planned KEK lineages are moved out of and destroyed with
            (`wf_pipeline.retention.shred.apply_shreds`); needed only when the plan shreds.

    Returns:
        The `RetentionResult`: deleted count, bytes freed, tombstones written, per-group
        totals, and the lineages shredded (or deferred).

    Raises:
        KeysError: ``KEYS_MASTER_KEY_INVALID`` (lineages are due but no keyring is
            configured; raised before anything is deleted), ``KEYS_MANAGER_ERROR``.
        RecordError: ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``.
        CasError: ``CAS_BACKEND_ERROR`` (the batch's tombstones stay; a rerun finishes it),
            ``CAS_DECRYPT_FAILED`` (a data key to move does not authenticate).
        RetentionError: ``RETENTION_ARCHIVE_ERROR`` (nothing deleted).
    """
    plan = plan_retention(env, now_ms=now_ms, archive=archive)
    if plan.shreds and keyring is None:
        raise KeysError(
            KEYS_MASTER_KEY_INVALID,
            f"retention would shred {len(plan.shreds)} KEK lineage(s), but no master key "
            "(WF_MASTER_KEY or WF_MASTER_KEY_FILE) or key manager is configured; nothing deleted",
            source="WF_MASTER_KEY, WF_MASTER_KEY_FILE",
        )
    total = plan.count
    done = tombstones = freed = 0
    if on_progress is not None:
        on_progress(0, total)
    with ThreadPoolExecutor(max_workers=DELETE_WORKERS, thread_name_prefix="retention-delete") as pool:
        for start in range(0, total, BATCH_SIZE):
            batch = plan.deletions[start : start + BATCH_SIZE]
            written_at = _wall_clock_ms()
            # Committed before any of the batch's objects goes: a crash never outruns its tombstones.
            tombstones += env.records.add_tombstones(item.tombstone(written_at) for item in batch)
            ids = [item.artifact_id for item in batch]
            slices = [ids[n::DELETE_WORKERS] for n in range(DELETE_WORKERS)]
            for _ in pool.map(lambda part: [env.cas.delete(i) for i in part], slices):
                pass  # iterating re-raises the first failed delete
            # A deleted artifact's data key goes too: nothing depends on its KEK any more (retire,
            # reports), and a copy of the object in a backup no longer opens.
            env.records.drop_data_keys(ids)
            for item in batch:
                record_deletion(env, item)
                freed += item.bytes
            done += len(batch)
            log.info("retention deleted %d of %d artifacts (%d bytes)", done, total, freed)
            if on_progress is not None:
                on_progress(done, total)
    env.telemetry.flush_safely()
    shredded: list[ShredResult] = []
    if plan.shreds:
        assert keyring is not None
        shredded = apply_shreds(keyring, plan.shreds)
    return RetentionResult(
        now_ms=now_ms,
        deleted=done,
        bytes_freed=freed,
        tombstones_written=tombstones,
        groups=tuple(plan.totals()),
        kept=plan.kept,
        shredded=tuple(shredded),
        plaintext_in_shred_mode=plan.plaintext_in_shred_mode,
    )


def record_deletion(env: RetentionEnv, item: PlannedDeletion) -> None:
    """The one place a sweep's deletion becomes a telemetry row (``artifact_writes``, outcome ``expired``).

    Ids, class and size only; buffered until the sweep's end (`apply_retention` flushes).
    """
    env.telemetry.artifact_event(
        workflow_id=item.workflow_id,
        profile_version=None,
        thread_id=item.thread_id,
        turn_id=item.turn_id,
        node_id=None,
        frame_id=None,
        artifact_class=item.artifact_class,
        bytes=item.bytes,
        outcome=item.reason,
    )


def _wall_clock_ms() -> int:
    # deleted_at_ms is when the tombstone was written, not the sweep's (possibly simulated) clock.
    return now_ms()
