"""The record-store protocol and the rules every implementation shares.

A record store keeps the canonical record models of `wf_pipeline.metadata.records`:
nodes, targets, threads, turns, gates, prompt links, artifact links and frames. Writes
are upserts on each record's deterministic id; the records of one turn attempt commit
together (`TurnCommit`). What must not differ between implementations lives here once:
the validation of records on the way in, the order every listing returns, and which
fields refer to artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import cache
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, TypeAdapter, ValidationError

from wf_pipeline.errors import RECORD_INVALID, RecordError
from wf_pipeline.metadata.records import (
    KEK_STATES,
    ActivationRecord,
    AnnotationEventRecord,
    AnnotationRecord,
    ArtifactLinkRecord,
    AuditEventRecord,
    DataKeyRecord,
    FrameRecord,
    GateRecord,
    GrantRecord,
    HoldRecord,
    IdentityRecord,
    KekRecord,
    NodeRecord,
    PromptLinkRecord,
    TargetRecord,
    ThreadRecord,
    TombstoneRecord,
    TreeRecord,
    TurnRecord,
)

RecordT = TypeVar("RecordT", bound=BaseModel)

# The order each listing returns, as (table, columns): ascending on every column. One
# definition serves the SQL ORDER BY and the in-memory sort alike.
ORDERS: dict[str, tuple[str, ...]] = {
    "nodes_for_root": ("path", "node_id"),
    "list_targets": ("target_key",),
    "list_trees": ("root_path", "root_id"),
    "list_threads": ("target_path", "thread_id"),
    "turns_for_thread": ("turn_seq", "attempt", "turn_id"),
    # Recorded answers to one request, oldest first: the order a replay gives them back in.
    "turns_for_request": ("started_at_ms", "thread_id", "attempt", "turn_record_id"),
    "gates_for_thread": ("evaluated_at_ms", "attempt", "gate_record_id"),
    "prompt_links_for_thread": ("created_at_ms", "prompt_link_id"),
    "artifact_links_for_thread": ("created_at_ms", "attempt", "artifact_link_id"),
    "frames_for_thread": ("created_at_ms", "frame_id"),
    # The head is the largest under this order: newest created_at_ms, then highest frame_id.
    "head_frame": ("created_at_ms", "frame_id"),
    "head_frames": ("node_id", "frame_type"),
    # Bulk listings follow the key: the database walks its primary key, with no sort.
    "list_prompt_links": ("prompt_link_id",),
    "list_artifact_links": ("artifact_link_id",),
    "list_tombstones": ("deleted_at_ms", "artifact_id"),
    "active_holds": ("created_at_ms", "hold_id"),
    # kek_id last only breaks ties a lineage never has (one KEK per class, period, generation).
    "list_keks": ("artifact_class", "period_start_ms", "generation", "kek_id"),
    # Keyset pages: the next page starts after the last artifact_id of this one.
    "data_keys_under": ("artifact_id",),
    "list_identities": ("name",),
    "list_grants": ("issued_at_ms", "grant_id"),
    "list_activations": ("created_at_ms", "activation_id"),
    "prompt_links_for_artifact": ("prompt_link_id",),
    # The audit trail in chain order: its position.
    "audit_records": ("seq",),
    # A frame's annotation log: per key, in the order the changes were appended.
    "annotation_events": ("key", "seq"),
}

# How many ids one ``IN (...)`` lookup carries: SQLite caps bound parameters per statement.
ID_CHUNK = 500

# Every (table, column) holding one artifact id; turns.input_artifact_ids holds several.
# nodes.content_digest is not one: it is the digest of a file of the scanned tree, in the
# same ``sha256:`` form, but the file's bytes live in the tree and are never put in the CAS.
ARTIFACT_REFERENCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("turns", "output_artifact_id"),
    ("artifact_links", "artifact_id"),
    ("frames", "artifact_id"),
    ("prompt_links", "system_prompt_artifact_id"),
    ("prompt_links", "user_prompt_template_artifact_id"),
    ("prompt_links", "rendered_prompt_artifact_id"),
    ("prompt_links", "context_artifact_id"),
)
ARTIFACT_LIST_COLUMN = ("turns", "input_artifact_ids")
#: A thread's pinned profile snapshot (`wf_pipeline.profiles.snapshot`): referenced as long as
#: the thread's row is. Apart from `ARTIFACT_REFERENCE_COLUMNS` because archives written before
#: the column existed do not hold it.
PINNED_PROFILE_COLUMN = ("threads", "profile_artifact_id")


@dataclass(frozen=True)
class TurnCommit:
    """Everything one attempt of one turn writes, committed together.

    Attributes:
        thread: the thread row, upserted first (the others reference it).
        turn: the turn attempt.
        gate, prompt_link, frame: optional rows of the same attempt.
        artifact_links: links of the artifacts the attempt read or wrote.

    A commit whose turn carries a ``segment`` (`TurnRecord.segment`) may race with the
    commits of its siblings: the store merges its thread row with the stored one in the
    commit's transaction (`merged_thread`).

    Raises ``RECORD_INVALID`` when a member belongs to another thread, turn or attempt.
    """

    thread: ThreadRecord
    turn: TurnRecord
    gate: GateRecord | None = None
    prompt_link: PromptLinkRecord | None = None
    artifact_links: tuple[ArtifactLinkRecord, ...] = ()
    frame: FrameRecord | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifact_links", tuple(self.artifact_links))
        turn = self.turn
        members = [
            ("turn", turn),
            ("gate", self.gate),
            ("prompt_link", self.prompt_link),
            *(("artifact_link", link) for link in self.artifact_links),
            ("frame", self.frame),
        ]
        for name, record in members:
            if record is None:
                continue
            # Prompt links and frames carry no attempt, frames no turn id: absent fields agree.
            belongs = (
                record.thread_id == self.thread.thread_id
                and getattr(record, "turn_id", turn.turn_id) == turn.turn_id
                and getattr(record, "attempt", turn.attempt) == turn.attempt
            )
            if not belongs:
                raise RecordError(
                    RECORD_INVALID,
                    f"{name} record does not belong to turn {turn.turn_id} attempt {turn.attempt} "
                    f"of thread {self.thread.thread_id}",
                    thread_id=self.thread.thread_id,
                    record=name,
                )

    def validated(self) -> ValidatedTurn:
        """Every member re-validated (`validated`); raises ``RECORD_INVALID``."""
        return ValidatedTurn(
            thread=validated(self.thread, ThreadRecord),
            turn=validated(self.turn, TurnRecord),
            gate=None if self.gate is None else validated(self.gate, GateRecord),
            prompt_link=None if self.prompt_link is None else validated(self.prompt_link, PromptLinkRecord),
            artifact_links=tuple(validated(link, ArtifactLinkRecord) for link in self.artifact_links),
            frame=None if self.frame is None else validated(self.frame, FrameRecord),
        )


@dataclass(frozen=True)
class ValidatedTurn:
    """A `TurnCommit` whose members passed validation; rows per table, parents first."""

    thread: ThreadRecord
    turn: TurnRecord
    gate: GateRecord | None
    prompt_link: PromptLinkRecord | None
    artifact_links: tuple[ArtifactLinkRecord, ...]
    frame: FrameRecord | None

    def with_thread(self, thread: ThreadRecord) -> ValidatedTurn:
        """The same commit with ``thread`` as its thread row (a merged one, `merged_thread`)."""
        return replace(self, thread=thread)

    def rows(self) -> list[tuple[str, list[BaseModel]]]:
        """(table name, records) in write order: the thread row first, as the others reference it."""
        return [
            ("threads", [self.thread]),
            ("turns", [self.turn]),
            ("gates", [self.gate] if self.gate else []),
            ("prompt_links", [self.prompt_link] if self.prompt_link else []),
            ("artifact_links", list(self.artifact_links)),
            ("frames", [self.frame] if self.frame else []),
        ]


def validated(record: Any, model: type[RecordT]) -> RecordT:
    """Re-validate ``record`` as ``model``; models built with ``model_construct`` skip checks.

    Raises ``RECORD_INVALID`` naming the failing fields and error types (never values,
    which may hold payload text).
    """
    if not isinstance(record, model):
        raise RecordError(RECORD_INVALID, f"expected a {model.__name__}, got {type(record).__name__}")
    try:
        return model.model_validate(record.model_dump())
    except ValidationError as exc:
        raise RecordError(
            RECORD_INVALID, f"{model.__name__} fails validation: {field_errors(exc)}", model=model.__name__
        ) from exc


def field_errors(exc: ValidationError) -> str:
    """``loc:type`` of each error in ``exc``, comma-separated; input values are left out."""
    return ", ".join(f"{'.'.join(map(str, err['loc']))}:{err['type']}" for err in exc.errors())


def check_turn_commit(commit: Any) -> ValidatedTurn:
    """``commit`` validated; ``RECORD_INVALID`` if it is not a `TurnCommit` or a member is invalid."""
    if not isinstance(commit, TurnCommit):
        raise RecordError(RECORD_INVALID, f"expected a TurnCommit, got {type(commit).__name__}")
    return commit.validated()


def merged_thread(
    stored: ThreadRecord | None, new: ThreadRecord, turn: TurnRecord, latest: Iterable[TurnRecord]
) -> ThreadRecord:
    """The thread row a turn of a parallel segment writes, merged with the row as stored.

    Sibling turns of one segment (docs/specs/parallel-segments.md) each commit a thread row
    derived from the copy they read when they started, in any order. The merge keeps what
    a sibling recorded meanwhile:

    - ``last_turn_seq`` is the furthest turn reached: it never goes back (the maximum);
    - a failure stands while a sibling of the same segment has failed as its latest attempt
      (a retry or resume of the failed turn itself, or of every failed sibling, clears it);
    - a completed thread is not set back to running by a sibling that read it earlier.

    Args:
        stored: the thread row as stored now, in the commit's transaction (None: none yet).
        new: the thread row the commit carries.
        turn: the commit's turn attempt (its ``turn_id`` and ``segment``).
        latest: the thread's latest attempt of each turn, as stored.

    Returns:
        The row to write (``new`` when nothing is to merge). Raises nothing.
    """
    if stored is None:
        return new
    update: dict[str, Any] = {"last_turn_seq": max(stored.last_turn_seq, new.last_turn_seq)}
    if stored.status == "failed" and new.status != "failed":
        failed_sibling = any(
            other.status == "failed" and other.segment == turn.segment and other.turn_id != turn.turn_id
            for other in latest
        )
        if failed_sibling:
            update.update(status=stored.status, error_code=stored.error_code, error_text=stored.error_text)
    elif stored.status == "completed" and new.status in ("pending", "running"):
        update.update(status="completed", error_code=None, error_text=None)
    return new.model_copy(update=update)


def latest_by_turn(turns: Iterable[TurnRecord]) -> dict[str, TurnRecord]:
    """turn_id -> its record of highest attempt, in turn_seq order, from turns in listing order."""
    # Rows come in attempt order, so the last one seen per turn_id is its latest.
    latest = {turn.turn_id: turn for turn in turns}
    return dict(sorted(latest.items(), key=lambda item: (item[1].turn_seq, item[0])))


@dataclass(frozen=True)
class ThreadLease:
    """Who may run a thread's turns now, until when.

    Attributes:
        thread_id: the leased thread.
        holder: the holder's id (opaque to the store; the runtime puts host and pid in it).
        expires_at_ms: Unix epoch in ms after which anyone may take the lease over.
    """

    thread_id: str
    holder: str
    expires_at_ms: int


def check_lease_args(thread_id: Any, holder: Any, ttl_ms: Any) -> None:
    """Refuse lease arguments no store can keep: ``RECORD_INVALID`` naming the argument."""
    if not isinstance(thread_id, str) or not thread_id:
        raise RecordError(RECORD_INVALID, "a lease needs a non-empty thread_id")
    if not isinstance(holder, str) or not holder:
        raise RecordError(RECORD_INVALID, "a lease needs a non-empty holder", thread_id=thread_id)
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms <= 0:
        raise RecordError(
            RECORD_INVALID, f"a lease needs a positive ttl_ms, got {ttl_ms!r}", thread_id=thread_id
        )


# --- keyring arguments ---------------------------------------------------------------------

# Fields a KEK update may not set: its key, and the row format the store writes itself.
KEK_FIXED_FIELDS = frozenset({"kek_id", "schema_version"})


@cache
def _kek_field_adapter(name: str) -> TypeAdapter[Any]:
    field = KekRecord.model_fields[name]
    # The field's constraints (gt, ge, min_length) travel in its metadata.
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def check_kek_changes(kek_id: Any, expected_state: Any, changes: Mapping[str, object]) -> dict[str, Any]:
    """The ``changes`` of a `RecordStore.update_kek`, each value validated as its `KekRecord` field.

    Returns the changes as the store writes them. Raises ``RECORD_INVALID`` naming the
    field (never its value: ``key_ref`` is key material) for an unknown or fixed field
    (``kek_id``, ``schema_version``), a value its field refuses, no changes at all, or an
    ``expected_state`` outside `KEK_STATES`.
    """
    if not isinstance(kek_id, str) or not kek_id:
        raise RecordError(RECORD_INVALID, "update_kek needs a non-empty kek_id")
    if expected_state not in KEK_STATES:
        raise RecordError(
            RECORD_INVALID, f"expected_state must be one of {', '.join(KEK_STATES)}", kek_id=kek_id
        )
    if not changes:
        raise RecordError(RECORD_INVALID, "update_kek needs at least one change", kek_id=kek_id)
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in KekRecord.model_fields or name in KEK_FIXED_FIELDS:
            raise RecordError(RECORD_INVALID, f"update_kek cannot set {name!r}", kek_id=kek_id, field=name)
        try:
            checked[name] = _kek_field_adapter(name).validate_python(value, strict=True)
        except ValidationError as exc:
            raise RecordError(
                RECORD_INVALID,
                f"KekRecord.{name} fails validation: {field_errors(exc)}",
                kek_id=kek_id,
                field=name,
            ) from exc
    return checked


def check_keyring_meta(name: Any, value: Any = b"") -> None:
    """Refuse a keyring value no store can keep: ``RECORD_INVALID`` unless a non-empty str name and bytes."""
    if not isinstance(name, str) or not name:
        raise RecordError(RECORD_INVALID, "a keyring value needs a non-empty name")
    if not isinstance(value, bytes):
        raise RecordError(RECORD_INVALID, "a keyring value must be bytes", name=name)


#: The largest integer a query takes: SQL's signed 64-bit BIGINT (SQLite INTEGER, PostgreSQL bigint).
MAX_SQL_INT = 2**63 - 1


def check_page_limit(limit: Any) -> int:
    """``limit`` of a page listing, an int from 1 to `MAX_SQL_INT`; ``RECORD_INVALID`` otherwise.

    A larger one would overflow the driver (SQLite) or be misread as a stored value the
    column rejects (PostgreSQL), so it is refused before any query.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_SQL_INT:
        raise RecordError(
            RECORD_INVALID, f"a page limit must be an int from 1 to {MAX_SQL_INT}, got {str(limit)[:40]}"
        )
    return limit


def claimed_data_keys(records: Iterable[Any]) -> list[DataKeyRecord]:
    """The data keys of a `RecordStore.claim_data_keys`, validated, one per artifact_id, by artifact_id.

    Within one batch the first record of an artifact wins, as it would against a stored
    one. Sorting makes concurrent batches lock rows in the same order (no deadlock).
    Raises ``RECORD_INVALID`` (see `validated`).
    """
    first: dict[str, DataKeyRecord] = {}
    for record in records:
        key = validated(record, DataKeyRecord)
        first.setdefault(key.artifact_id, key)
    return [first[artifact_id] for artifact_id in sorted(first)]


# --- annotations: the append-only log and its view --------------------------------------


def annotation_events_for(
    frame_id: Any, changes: Any, *, domain: Any, at_ms: Any, last_seq: Mapping[str, int]
) -> list[AnnotationEventRecord]:
    """The events of one `RecordStore.append_annotations`, validated, in key order.

    Args:
        frame_id, domain: the annotated frame and the writing domain (non-empty str).
        changes: key -> new value (str), or None to clear the key.
        at_ms: the time of the change (epoch ms).
        last_seq: key -> the seq of its last stored event (absent: none yet).

    Raises ``RECORD_INVALID`` (no changes, a key or value of the wrong type, an invalid
    event), naming fields, never values.
    """
    if not isinstance(changes, Mapping) or not changes:
        raise RecordError(RECORD_INVALID, "an annotation append needs a non-empty mapping of changes")
    if isinstance(at_ms, bool) or not isinstance(at_ms, int):
        raise RecordError(RECORD_INVALID, "an annotation append needs at_ms, an int of epoch ms")
    events: list[AnnotationEventRecord] = []
    for key in sorted(changes, key=str):
        value = changes[key]
        if not isinstance(key, str) or (value is not None and not isinstance(value, str)):
            raise RecordError(RECORD_INVALID, "annotation keys and values must be str (None clears a key)")
        try:
            event = AnnotationEventRecord(
                frame_id=frame_id,
                key=key,
                seq=last_seq.get(key, 0) + 1,
                kind="clear" if value is None else "set",
                value=value,
                domain=domain,
                at_ms=at_ms,
            )
        except ValidationError as exc:
            raise RecordError(
                RECORD_INVALID,
                f"AnnotationEventRecord fails validation: {field_errors(exc)}",
                model="AnnotationEventRecord",
            ) from exc
        events.append(event)
    return events


def view_row(event: AnnotationEventRecord) -> AnnotationRecord | None:
    """The view row a key has right after ``event`` (None: the key has no value)."""
    if event.value is None:
        return None
    return AnnotationRecord(
        frame_id=event.frame_id,
        key=event.key,
        value=event.value,
        domain=event.domain,
        seq=event.seq,
        updated_at_ms=event.at_ms,
    )


def replay_annotations(events: Iterable[AnnotationEventRecord]) -> dict[tuple[str, str], AnnotationRecord]:
    """The view the log ``events`` produces: (frame_id, key) -> current row, applying events in seq order."""
    view: dict[tuple[str, str], AnnotationRecord] = {}
    for event in sorted(events, key=lambda e: (e.frame_id, e.key, e.seq)):
        row = view_row(event)
        if row is None:
            view.pop((event.frame_id, event.key), None)
        else:
            view[(event.frame_id, event.key)] = row
    return view


def check_fold_cutoffs(cutoffs: Any) -> dict[str, int]:
    """``cutoffs`` of `RecordStore.fold_annotation_events` as a dict; ``RECORD_INVALID`` unless key -> int ms."""
    if not isinstance(cutoffs, Mapping) or not all(
        isinstance(key, str) and isinstance(at, int) and not isinstance(at, bool)
        for key, at in cutoffs.items()
    ):
        raise RecordError(RECORD_INVALID, "fold cutoffs must map annotation keys to epoch ms")
    return dict(cutoffs)


def fold_plan(
    old_events: Iterable[AnnotationEventRecord],
) -> list[tuple[list[AnnotationEventRecord], AnnotationEventRecord]]:
    """Which old events to fold, and the snapshot that replaces each run.

    ``old_events`` are events older than their key's cutoff. Per (frame, key), the run
    folded is the longest run of consecutive seqs that starts the key's log (seq 1 or a
    snapshot): folding only a prefix keeps every later event's meaning. A run of fewer
    than two events is left as it is. The snapshot has the run's last seq, time and domain,
    the value after the run (None when it ends cleared) and counts the events it stands for.

    Returns:
        (events to delete, snapshot to insert) pairs, in (frame_id, key) order.
    """
    groups: dict[tuple[str, str], list[AnnotationEventRecord]] = {}
    for event in sorted(old_events, key=lambda e: (e.frame_id, e.key, e.seq)):
        groups.setdefault((event.frame_id, event.key), []).append(event)
    plan: list[tuple[list[AnnotationEventRecord], AnnotationEventRecord]] = []
    for events in groups.values():
        if events[0].seq != 1 and events[0].kind != "snapshot":
            continue
        run = [events[0]]
        for event in events[1:]:
            if event.seq != run[-1].seq + 1:
                break
            run.append(event)
        if len(run) < 2:
            continue
        last = run[-1]
        snapshot = AnnotationEventRecord(
            frame_id=last.frame_id,
            key=last.key,
            seq=last.seq,
            kind="snapshot",
            value=last.value,
            domain=last.domain,
            at_ms=last.at_ms,
            folded=sum(event.folded or 1 for event in run),
        )
        plan.append((run, snapshot))
    return plan


@dataclass(frozen=True)
class Rewrap:
    """One row change of a `RecordStore.rewrap_data_keys`: move ``artifact_id`` from ``expected_kek_id``.

    Attributes:
        artifact_id: the data key's artifact.
        expected_kek_id: the kek_id the row must still have for the change to apply.
        kek_id, wrapped_key: the new KEK and the data key wrapped by it.
        rewrapped_at_ms: when it moved (Unix epoch ms).
    """

    artifact_id: str
    expected_kek_id: str
    kek_id: str
    wrapped_key: bytes
    rewrapped_at_ms: int


def rewraps(records: Iterable[Any], expected_kek_ids: Mapping[str, str], at_ms: int) -> list[Rewrap]:
    """The row changes of a `RecordStore.rewrap_data_keys`, validated, by artifact_id.

    A record without ``rewrapped_at_ms`` gets ``at_ms`` (Unix epoch ms): a rewrapped key
    always says when it moved. Sorting makes concurrent batches lock rows in the same
    order (no deadlock). Raises ``RECORD_INVALID`` for an invalid record, one whose
    artifact_id has no non-empty expected kek_id, or an artifact_id given twice.
    """
    changes: dict[str, Rewrap] = {}
    for record in records:
        key = validated(record, DataKeyRecord)
        expected = expected_kek_ids.get(key.artifact_id)
        if not isinstance(expected, str) or not expected:
            raise RecordError(
                RECORD_INVALID,
                f"rewrap of {key.artifact_id} names no expected kek_id",
                artifact_id=key.artifact_id,
            )
        if key.artifact_id in changes:
            raise RecordError(
                RECORD_INVALID, f"rewrap names {key.artifact_id} twice", artifact_id=key.artifact_id
            )
        at = at_ms if key.rewrapped_at_ms is None else key.rewrapped_at_ms
        changes[key.artifact_id] = Rewrap(key.artifact_id, expected, key.kek_id, key.wrapped_key, at)
    return [changes[artifact_id] for artifact_id in sorted(changes)]


# --- grant metering -----------------------------------------------------------------------

#: Outcomes of `RecordStore.use_grant`: the read was counted, or why it was not.
GRANT_USE_OK = "ok"
GRANT_USE_UNKNOWN = "unknown"
GRANT_USE_REVOKED = "revoked"
GRANT_USE_BUDGET = "budget"
GRANT_USE_RATE = "rate"


def check_grant_use(grant_id: Any, size: Any, at_ms: Any) -> None:
    """Refuse `RecordStore.use_grant` arguments: ``RECORD_INVALID`` naming the argument."""
    if not isinstance(grant_id, str) or not grant_id:
        raise RecordError(RECORD_INVALID, "use_grant needs a non-empty grant_id")
    for name, value in (("size", size), ("at_ms", at_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RecordError(
                RECORD_INVALID, f"use_grant needs a {name} >= 0, got {value!r}", grant_id=grant_id
            )


def window_expired(grant: GrantRecord, at_ms: int) -> bool:
    """Whether ``at_ms`` falls after the grant's current rate window (a fixed window of ``rate_window_ms``)."""
    return at_ms >= grant.window_start_ms + grant.rate_window_ms


def grant_use_refusal(grant: GrantRecord | None, size: int, at_ms: int) -> str | None:
    """Why a read of ``size`` bytes at ``at_ms`` may not be counted on ``grant``; None when it may.

    Returns one of `GRANT_USE_UNKNOWN`, `GRANT_USE_REVOKED`, `GRANT_USE_BUDGET` (``bytes_used
    + size`` would pass ``max_bytes``), `GRANT_USE_RATE` (``rate_reads`` reads in the current
    window already). Budget before rate: a read too large for the budget never fits later.
    """
    if grant is None:
        return GRANT_USE_UNKNOWN
    if grant.revoked_at_ms is not None:
        return GRANT_USE_REVOKED
    if grant.bytes_used + size > grant.max_bytes:
        return GRANT_USE_BUDGET
    if not window_expired(grant, at_ms) and grant.window_reads >= grant.rate_reads:
        return GRANT_USE_RATE
    return None


def grant_used(grant: GrantRecord, size: int, at_ms: int) -> GrantRecord:
    """``grant`` after one counted read of ``size`` bytes at ``at_ms`` (a new window starts when the last one ended)."""
    fresh = window_expired(grant, at_ms)
    return grant.model_copy(
        update={
            "bytes_used": grant.bytes_used + size,
            "reads": grant.reads + 1,
            "window_start_ms": at_ms if fresh else grant.window_start_ms,
            "window_reads": 1 if fresh else grant.window_reads + 1,
        }
    )


# --- audit trail ---------------------------------------------------------------------------

#: Builds the next audit event of `RecordStore.append_audit_record` from its position: called
#: with (seq, event_hash of the current head, or None for the first event), inside the
#: store's lock, and returns the complete record (its own hashes computed).
AuditBuilder = Callable[[int, str | None], AuditEventRecord]


def check_audit_record(record: Any, seq: int, prev_hash: str | None) -> AuditEventRecord:
    """The record an `AuditBuilder` returned for position ``seq``, validated.

    Raises ``RECORD_INVALID`` (see `validated`) when it is no valid `AuditEventRecord`,
    when its seq is not ``seq``, or, after the first event, when its prev_hash is not the
    head's event_hash ``prev_hash``: an append extends the chain at its head, nowhere else.
    """
    event = validated(record, AuditEventRecord)
    if event.seq != seq:
        raise RecordError(
            RECORD_INVALID, f"audit event {event.event_id} has seq {event.seq}, the next position is {seq}"
        )
    if prev_hash is not None and event.prev_hash != prev_hash:
        raise RecordError(
            RECORD_INVALID,
            f"audit event {event.event_id} at seq {seq} does not link to the head event {seq - 1}",
            seq=seq,
        )
    return event


def check_audit_query(after_seq: Any, limit: Any) -> None:
    """Refuse audit listing arguments: ``RECORD_INVALID`` unless after_seq is an int >= 0 and limit None or positive."""
    if not isinstance(after_seq, int) or isinstance(after_seq, bool) or not 0 <= after_seq <= MAX_SQL_INT:
        raise RecordError(
            RECORD_INVALID, f"after_seq must be an int from 0 to {MAX_SQL_INT}, got {str(after_seq)[:40]}"
        )
    if limit is not None:
        check_page_limit(limit)


@runtime_checkable
class RecordStore(Protocol):
    """Durable records of threads and what they touched.

    Every implementation passes the conformance suite in
    ``tests/conformance/records_suite.py``. Writes validate their records first
    (``RECORD_INVALID``, nothing written) and upsert on each record's key; a write that
    breaks a uniqueness or reference rule is ``RECORD_INTEGRITY`` and leaves nothing of
    itself behind; an unreachable backend is ``RECORD_UNAVAILABLE``. Listings return
    models in the order `ORDERS` names.
    """

    backend: str

    @property
    def url(self) -> str:
        """The store's URL, any password masked."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...

    def __enter__(self) -> RecordStore: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def upsert_nodes(self, records: Iterable[NodeRecord]) -> int:
        """Upsert nodes keyed by (node_id, path); returns how many distinct nodes were written."""
        ...

    def nodes_for_root(self, root_id: str) -> list[NodeRecord]:
        """Nodes seen under the root ``root_id``, by path then node_id."""
        ...

    def save_targets(self, records: Iterable[TargetRecord]) -> None:
        """Upsert targets keyed by target_key: the latest registration of a key wins."""
        ...

    def get_target(self, target_key: str) -> TargetRecord | None:
        """The target of ``target_key``, or None."""
        ...

    def list_targets(self) -> list[TargetRecord]:
        """Every target, by target_key."""
        ...

    def save_tree(self, record: TreeRecord) -> None:
        """Upsert one tree keyed by root_id: the latest registration wins."""
        ...

    def get_tree(self, root_id: str) -> TreeRecord | None:
        """The tree ``root_id``, or None."""
        ...

    def list_trees(self) -> list[TreeRecord]:
        """Every registered tree, by root_path then root_id."""
        ...

    def save_thread(self, record: ThreadRecord) -> None:
        """Upsert one thread keyed by thread_id."""
        ...

    def add_thread(self, record: ThreadRecord) -> ThreadRecord:
        """Insert a thread unless its thread_id is recorded; returns the thread as stored.

        Atomic: of two processes planning the same new thread, one inserts and the other
        gets that row back, so a plan never resets a thread another process has moved on.
        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def get_thread(self, thread_id: str) -> ThreadRecord | None:
        """The thread ``thread_id``, or None."""
        ...

    def list_threads(self, workflow_id: str | None = None, status: str | None = None) -> list[ThreadRecord]:
        """Threads, optionally of one workflow and/or one status, by target_path then thread_id."""
        ...

    def commit_turn(self, commit: TurnCommit) -> None:
        """Upsert the thread and every record of one turn attempt, all or nothing.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY`` (e.g. a second
        turn row for the same attempt under another id; nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def commit_turns(self, commits: Iterable[TurnCommit]) -> int:
        """`commit_turn` for many turn attempts in one transaction, all or nothing; returns how many.

        For bulk loads (imports, fixtures): one statement per table instead of one
        transaction per turn. Raises as `commit_turn`.
        """
        ...

    def turns_for_thread(self, thread_id: str) -> list[TurnRecord]:
        """Every turn attempt of a thread, by turn_seq, attempt, turn_id."""
        ...

    def latest_turns(self, thread_id: str) -> dict[str, TurnRecord]:
        """turn_id -> the record of its highest attempt, in turn_seq order."""
        ...

    def turns_for_request(self, request_digest: str) -> list[TurnRecord]:
        """Every turn attempt recorded with ``request_digest`` (`TurnRecord.request_digest`), oldest first.

        Order: started_at_ms, thread_id, attempt, turn_record_id. Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    def gates_for_thread(self, thread_id: str) -> list[GateRecord]:
        """Gate results of a thread, by evaluated_at_ms, attempt, gate_record_id."""
        ...

    def prompt_links_for_thread(self, thread_id: str) -> list[PromptLinkRecord]:
        """Prompt links of a thread, by created_at_ms, prompt_link_id."""
        ...

    def artifact_links_for_thread(self, thread_id: str) -> list[ArtifactLinkRecord]:
        """Artifact links of a thread, by created_at_ms, attempt, artifact_link_id."""
        ...

    def save_frame(self, record: FrameRecord) -> None:
        """Upsert one frame keyed by frame_id; ``RECORD_INTEGRITY`` if (node, type, artifact) is taken."""
        ...

    def head_frame(self, node_id: str, frame_type: str) -> FrameRecord | None:
        """The latest frame of ``frame_type`` on ``node_id`` (newest created_at_ms, then highest frame_id)."""
        ...

    def get_frame(self, frame_id: str) -> FrameRecord | None:
        """The frame ``frame_id``, or None."""
        ...

    def frame_artifact_ids(self, frame_type: str) -> set[str]:
        """Artifact ids of every frame of ``frame_type``."""
        ...

    def referenced_artifact_ids(self) -> set[str]:
        """Every artifact id any record refers to; CAS objects outside this set are orphans."""
        ...

    def frames_for_thread(self, thread_id: str) -> list[FrameRecord]:
        """Frames a thread produced, by created_at_ms, frame_id."""
        ...

    def delete_threads(self, expected_updated_at_ms: Mapping[str, int]) -> list[str]:
        """Delete threads with every row of their history, in one transaction.

        Used once those rows are durable elsewhere (the compaction archive). A thread is
        deleted only if its ``updated_at_ms`` still equals the value given for it, so a
        thread that moved on since it was read (resumed, rerun) stays whole. Its turns,
        gates, prompt links, artifact links, frames and lease go with it.

        Args:
            expected_updated_at_ms: thread_id -> the ``updated_at_ms`` it was read with.

        Returns:
            The ids of the threads deleted, sorted; absent or changed threads are left out.

        Raises ``RECORD_UNAVAILABLE`` (nothing deleted).
        """
        ...

    def head_frames(self) -> list[FrameRecord]:
        """The head frame (`head_frame`) of every (node_id, frame_type) pair, by node_id then frame_type."""
        ...

    def list_prompt_links(self) -> list[PromptLinkRecord]:
        """Every prompt link of every thread, by prompt_link_id (retention plans from them)."""
        ...

    def list_artifact_links(self) -> list[ArtifactLinkRecord]:
        """Every artifact link of every thread, by artifact_link_id."""
        ...

    # Retention: tombstones of deleted artifacts and legal holds. Both outlive the threads
    # they describe, so neither references the threads table.

    def add_tombstones(self, records: Iterable[TombstoneRecord]) -> int:
        """Upsert tombstones keyed by artifact_id, all in one transaction; returns how many distinct ids.

        An artifact deleted again keeps its latest tombstone. Raises ``RECORD_INVALID``
        (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def drop_tombstones(self, artifact_ids: Iterable[str]) -> int:
        """Remove the tombstones of ``artifact_ids`` (their objects were stored again); returns how many went.

        Ids without a tombstone are ignored. Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    def get_tombstone(self, artifact_id: str) -> TombstoneRecord | None:
        """The tombstone of ``artifact_id``, or None when it was never deleted."""
        ...

    def tombstones_for(self, artifact_ids: Iterable[str]) -> dict[str, TombstoneRecord]:
        """artifact_id -> tombstone, for those of ``artifact_ids`` that have one."""
        ...

    def list_tombstones(
        self, workflow_id: str | None = None, artifact_class: str | None = None
    ) -> list[TombstoneRecord]:
        """Tombstones, optionally of one workflow and/or class, by deleted_at_ms then artifact_id."""
        ...

    def add_hold(self, record: HoldRecord) -> None:
        """Upsert one hold keyed by hold_id; ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``."""
        ...

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold ``hold_id`` (active or released), or None."""
        ...

    def release_hold(self, hold_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``released_at_ms`` (default now) of an active hold; False if unknown or already released."""
        ...

    def active_holds(self) -> list[HoldRecord]:
        """Holds not released, by created_at_ms then hold_id."""
        ...

    def sweep_lock(self) -> AbstractContextManager[None]:
        """Hold the store-wide lock of destructive sweeps (retention apply, compaction) while inside.

        Sweeps by several homes or machines over one shared store wait for each other, so
        no two plan the same deletions. On PostgreSQL a session advisory lock keyed by the
        store's schema and table prefix (released when the session ends, so a killed sweep
        blocks no one); a store only one home uses (SQLite, memory) needs none: the
        home's file lock serializes its sweeps. Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    # Keyring: KEK records (material stays with the key manager) and the wrapped data key of
    # every encrypted artifact. Data keys outlive threads (a shredded artifact's key row stays
    # so reports can list it), so neither table references the threads table.

    def keyring_meta(self, name: str) -> bytes | None:
        """The keyring's stored value ``name`` (e.g. the master-key check), or None."""
        ...

    def claim_keyring_meta(self, name: str, value: bytes) -> bytes:
        """Store ``value`` under ``name`` unless a value is there; returns the stored value (first writer wins).

        Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    def add_kek(self, record: KekRecord) -> KekRecord:
        """Insert a KEK unless one with its kek_id exists; returns the stored record (first writer wins).

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def get_kek(self, kek_id: str) -> KekRecord | None:
        """The KEK ``kek_id``, or None."""
        ...

    def list_keks(self, artifact_class: str | None = None) -> list[KekRecord]:
        """KEKs (optionally of one class), by artifact_class, period_start_ms, generation."""
        ...

    def update_kek(self, kek_id: str, *, expected_state: str, **changes: object) -> KekRecord | None:
        """Set fields of the KEK ``kek_id`` if its state is still ``expected_state``; the new record, or None.

        ``changes`` names `KekRecord` fields (``state``, ``key_ref``, ``*_at_ms``). A
        compare-and-set, so two lifecycle commands never both win. Raises ``RECORD_INVALID``,
        ``RECORD_UNAVAILABLE``.
        """
        ...

    def claim_data_keys(self, records: Iterable[DataKeyRecord]) -> dict[str, DataKeyRecord]:
        """Insert each data key unless its artifact_id has one; returns artifact_id -> the stored record.

        All in one transaction. First writer wins: concurrent writers of one artifact all
        get the same stored key back and encrypt with it. Raises ``RECORD_INVALID``
        (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def data_keys_for(self, artifact_ids: Iterable[str]) -> dict[str, DataKeyRecord]:
        """artifact_id -> data key record, for those of ``artifact_ids`` that have one."""
        ...

    def data_keys_under(
        self, kek_ids: Iterable[str], *, after_artifact_id: str | None = None, limit: int = 1000
    ) -> list[DataKeyRecord]:
        """Data keys wrapped by any of ``kek_ids``, by artifact_id, starting after ``after_artifact_id``.

        Pages through a KEK's keys (rewrap batches, reports) without loading them all.
        """
        ...

    def rewrap_data_keys(
        self, records: Iterable[DataKeyRecord], *, expected_kek_ids: Mapping[str, str]
    ) -> int:
        """Replace wrapped_key, kek_id and rewrapped_at_ms of each record whose stored kek_id is still ``expected_kek_ids[artifact_id]``.

        One transaction; a row moved by someone else meanwhile is left alone (compare-and-set).
        Returns how many rows changed. Raises ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
        """
        ...

    def drop_data_keys(self, artifact_ids: Iterable[str]) -> int:
        """Remove the data keys of ``artifact_ids`` (their objects were deleted); returns how many went.

        Ids without a data key are ignored. Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    def count_data_keys(self) -> dict[str, int]:
        """kek_id -> how many data keys it wraps (KEKs wrapping none are absent)."""
        ...

    # Audit trail: an append-only hash chain. Rows are inserted at the head, one at a time,
    # under a store-wide lock; nothing updates or deletes them (the SQL tables have triggers
    # refusing both), and no other method touches them.

    def append_audit_record(self, build: AuditBuilder) -> AuditEventRecord:
        """Append the event ``build(seq, head_hash)`` returns at the head of the trail; returns it as stored.

        Under one lock and one transaction the head (highest seq) is read, ``build`` is
        called with ``head.seq + 1`` and ``head.event_hash`` (1 and None on an empty
        trail), and its record inserted, so concurrent appenders in any process never
        fork the chain or leave a gap. PostgreSQL: a transaction-scoped advisory lock per
        store; SQLite: the write lock of ``BEGIN IMMEDIATE``. An exception from ``build``
        writes nothing and propagates. Raises ``RECORD_INVALID`` (see
        `check_audit_record`; nothing written), ``RECORD_INTEGRITY`` (event_id taken),
        ``RECORD_UNAVAILABLE``, ``RECORD_STORAGE_ERROR``.
        """
        ...

    def audit_records(
        self,
        *,
        after_seq: int = 0,
        since_ms: int | None = None,
        grant_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEventRecord]:
        """Audit events with seq > ``after_seq``, by seq, at most ``limit`` (None: all).

        Optionally only those with ``at_ms >= since_ms`` (Unix epoch ms) and/or of one
        grant. Keyset pages: pass the last seq of a page as ``after_seq``. Raises
        ``RECORD_INVALID`` (bad after_seq or limit), ``RECORD_UNAVAILABLE``,
        ``RECORD_INTEGRITY`` (a stored row fails validation).
        """
        ...

    def audit_records_with_hashes(self, event_hashes: Iterable[str]) -> list[AuditEventRecord]:
        """The audit events whose event_hash is one of ``event_hashes``, by seq (``ID_CHUNK`` hashes a query)."""
        ...

    # Annotations: an append-only log of changes to annotation keys of frames, with a
    # materialized view of each key's current value kept in the same transaction. Neither
    # references the frames table.

    def append_annotations(
        self, frame_id: str, changes: Mapping[str, str | None], *, domain: str, at_ms: int
    ) -> list[AnnotationEventRecord]:
        """Append one event per changed key and update the view, all in one transaction.

        Each key's event gets the seq after its last one (`annotation_events_for`); a value
        sets the key's view row, None clears it (a ``clear`` event, the row removed). The
        caller has passed the changes through the metadata boundary
        (`FrameMetadataBoundary.validate_annotations`). Returns the events appended, by key.
        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY`` (a concurrent
        append took the same seq; nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def annotation_events(self, frame_id: str, key: str | None = None) -> list[AnnotationEventRecord]:
        """The log of ``frame_id`` (optionally of one key), by key then seq."""
        ...

    def current_annotations(self, frame_id: str) -> dict[str, AnnotationRecord]:
        """key -> the current view row of each annotation key of ``frame_id`` that has a value, by key."""
        ...

    def fold_annotation_events(self, cutoffs: Mapping[str, int]) -> int:
        """Fold each key's events older than its cutoff (key -> epoch ms) into one snapshot event.

        The runs and snapshots are `fold_plan`'s; deletes and inserts commit in one
        transaction and the view is not touched (it already holds each key's value after
        its last event). Returns how many events were removed (each run's length, minus
        its snapshot). Raises ``RECORD_INVALID`` (bad cutoffs), ``RECORD_UNAVAILABLE``.
        """
        ...

    # Thread leases: one holder at a time runs a thread's turns, across processes and hosts.
    # Atomic in the store (one statement or one lock), expiring so a dead holder blocks no one
    # for longer than its TTL. Times are the callers' wall clocks in ms (``at_ms``, default now).

    def acquire_lease(
        self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None
    ) -> ThreadLease:
        """Take the lease of ``thread_id`` for ``ttl_ms`` if it is free, expired or ``holder``'s own.

        Returns the lease as stored afterwards: ``holder`` is the caller's when it got
        (or renewed) the lease, another holder's live lease otherwise. Raises
        ``RECORD_INVALID`` (empty ids, ttl_ms <= 0), ``RECORD_UNAVAILABLE``.
        """
        ...

    def renew_lease(self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None) -> bool:
        """Extend ``holder``'s lease to ``at_ms + ttl_ms``; False when ``holder`` no longer holds it."""
        ...

    def release_lease(self, thread_id: str, holder: str) -> bool:
        """Drop ``holder``'s lease of ``thread_id``; False when ``holder`` did not hold it (nothing changes)."""
        ...

    # Identities and grants (`wf_pipeline.security`): public keys and roles, and the grants
    # issued, with their usage. Neither references the threads table.

    def prompt_links_for_artifact(self, artifact_id: str) -> list[PromptLinkRecord]:
        """Prompt links naming ``artifact_id`` as their rendered prompt or context, by prompt_link_id.

        Indexed lookups (privileged reads locate a payload by them). Raises ``RECORD_UNAVAILABLE``.
        """
        ...

    def add_identity(self, record: IdentityRecord) -> IdentityRecord:
        """Insert an identity unless its name is registered; returns the stored record (first writer wins).

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def get_identity(self, name: str) -> IdentityRecord | None:
        """The identity ``name``, or None."""
        ...

    def list_identities(self) -> list[IdentityRecord]:
        """Every identity, by name."""
        ...

    def add_grant(self, record: GrantRecord) -> GrantRecord:
        """Insert a grant unless its grant_id is recorded; returns the stored record (first writer wins).

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def get_grant(self, grant_id: str) -> GrantRecord | None:
        """The grant ``grant_id`` with its usage, or None."""
        ...

    def list_grants(self) -> list[GrantRecord]:
        """Every recorded grant, by issued_at_ms then grant_id."""
        ...

    def revoke_grant(self, grant_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``revoked_at_ms`` (default now) of a grant not yet revoked; False if unknown or already revoked."""
        ...

    def use_grant(self, grant_id: str, *, size: int, at_ms: int) -> str:
        """Count one read of ``size`` bytes at ``at_ms`` on the grant if its budget and rate allow it.

        Atomic across processes: one conditional update (SQL) or one lock (memory), so of
        two concurrent reads that together pass a limit exactly one is counted. Returns
        `GRANT_USE_OK` when counted, else the refusal `grant_use_refusal` names (nothing
        changes). Raises ``RECORD_INVALID`` (bad arguments), ``RECORD_UNAVAILABLE``.
        """
        ...

    # Chained activations (`wf_pipeline.runtime.activations`): which upstream threads started
    # which run. No thread reference: they outlive the threads.

    def add_activation(self, record: ActivationRecord) -> tuple[ActivationRecord, bool]:
        """Insert an activation unless its activation_id is recorded (first writer wins).

        Returns the stored record and whether this call inserted it. Raises
        ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        ...

    def list_activations(self, source_workflow_id: str | None = None) -> list[ActivationRecord]:
        """Recorded activations (of ``source_workflow_id`` when given), by created_at_ms then activation_id."""
        ...
