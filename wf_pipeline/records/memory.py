"""An in-memory `RecordStore`: the reference implementation of the protocol, for tests and demos.

Rows are kept as the dumped record models, per table, under one lock; every write
builds the new contents of the tables it touches, checks the same keys, uniqueness and
thread references as the SQL tables (`wf_pipeline.records.tables.TABLE_SPECS`), and only
then publishes them, so a failing write leaves nothing behind. Nothing survives the
process. ``memory://<name>`` opens a store by name (opens of the same name, schema and
prefix in one process share their rows); ``memory://`` opens a private one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from wf_pipeline.errors import RECORD_INTEGRITY, RECORD_INVALID, RecordError
from wf_pipeline.metadata.records import (
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
    now_ms,
)
from wf_pipeline.records.protocol import (
    ARTIFACT_LIST_COLUMN,
    ARTIFACT_REFERENCE_COLUMNS,
    GRANT_USE_OK,
    ORDERS,
    PINNED_PROFILE_COLUMN,
    AuditBuilder,
    RecordT,
    ThreadLease,
    TurnCommit,
    annotation_events_for,
    check_audit_query,
    check_audit_record,
    check_fold_cutoffs,
    check_grant_use,
    check_kek_changes,
    check_keyring_meta,
    check_lease_args,
    check_page_limit,
    check_turn_commit,
    claimed_data_keys,
    field_errors,
    fold_plan,
    grant_use_refusal,
    grant_used,
    latest_by_turn,
    merged_thread,
    rewraps,
    validated,
    view_row,
)
from wf_pipeline.records.tables import TABLE_SPECS

MEMORY_SCHEME = "memory"
_SPECS = {spec.name: spec for spec in TABLE_SPECS}

Row = dict[str, Any]


@dataclass
class _Contents:
    tables: dict[str, dict[tuple[Any, ...], Row]] = field(
        default_factory=lambda: {spec.name: {} for spec in TABLE_SPECS}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held over a read and a write: sibling turn commits merge their thread rows one at a time.
    merge_lock: threading.Lock = field(default_factory=threading.Lock)
    leases: dict[str, ThreadLease] = field(default_factory=dict)
    keyring_meta: dict[str, bytes] = field(default_factory=dict)


# Named stores of this process, so two opens of ``memory://x`` see the same rows.
_NAMED: dict[tuple[str, str | None, str], _Contents] = {}
_NAMED_LOCK = threading.Lock()


class MemoryRecordStore:
    """A `RecordStore` held in this process's memory.

    Args:
        name: stores of the same non-empty name (and schema and prefix) share their rows
            within the process; an empty name makes a private store.
        schema, table_prefix: only tell stores of one name apart, as they do in a database.

    Raises the protocol's codes: ``RECORD_INVALID`` and ``RECORD_INTEGRITY``; it is never
    unavailable.
    """

    backend = MEMORY_SCHEME

    def __init__(self, name: str = "", *, schema: str | None = None, table_prefix: str = "wf_") -> None:
        self._name = name
        if not name:
            self._contents = _Contents()
        else:
            with _NAMED_LOCK:
                self._contents = _NAMED.setdefault((name, schema, table_prefix), _Contents())

    @property
    def url(self) -> str:
        """``memory://<name>``."""
        return f"{MEMORY_SCHEME}://{self._name}"

    def __repr__(self) -> str:
        return f"MemoryRecordStore({self.url!r})"

    def close(self) -> None:
        """Nothing to release; the rows stay for other opens of the same name."""

    def __enter__(self) -> MemoryRecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------

    def _write(self, action: str, batches: Sequence[tuple[str, Sequence[BaseModel]]]) -> None:
        """Upsert every batch (table name, records) all or nothing; ``RECORD_INTEGRITY`` on a broken rule."""
        with self._contents.lock:
            staged = {name: dict(self._contents.tables[name]) for name, _ in batches}
            for name, records in batches:
                key = _SPECS[name].key
                for record in records:
                    row = record.model_dump()
                    staged[name][tuple(row[col] for col in key)] = row
            tables = {**self._contents.tables, **staged}
            for name in staged:
                self._check(action, name, tables)
            self._contents.tables.update(staged)

    @staticmethod
    def _check(action: str, name: str, tables: dict[str, dict[tuple[Any, ...], Row]]) -> None:
        spec = _SPECS[name]
        rows = tables[name].values()
        for columns in spec.unique:
            seen: set[tuple[Any, ...]] = set()
            for row in rows:
                values = tuple(row[col] for col in columns)
                if values in seen:
                    raise RecordError(
                        RECORD_INTEGRITY,
                        f"{action} violates a record constraint: two {name} rows share {', '.join(columns)}",
                        action=action,
                    )
                seen.add(values)
        if spec.references_thread:
            threads = tables["threads"]
            for row in rows:
                if (row["thread_id"],) not in threads:
                    raise RecordError(
                        RECORD_INTEGRITY,
                        f"{action} violates a record constraint: {name} row refers to a missing thread",
                        action=action,
                    )

    def _rows(self, name: str, where: Callable[[Row], bool] | None = None) -> list[Row]:
        with self._contents.lock:
            rows = list(self._contents.tables[name].values())
        return [row for row in rows if where is None or where(row)]

    def _listing(
        self, listing: str, name: str, model: type[RecordT], where: Callable[[Row], bool] | None = None
    ) -> list[RecordT]:
        columns = ORDERS[listing]
        rows = sorted(self._rows(name, where), key=lambda row: tuple(row[col] for col in columns))
        return [model.model_validate(row) for row in rows]

    # --- nodes and targets -----------------------------------------------------------

    def upsert_nodes(self, records: Iterable[NodeRecord]) -> int:
        """Upsert nodes keyed by (node_id, path); returns how many distinct nodes were written."""
        nodes = [validated(record, NodeRecord) for record in records]
        self._write("upsert_nodes", [("nodes", nodes)])
        return len({(node.node_id, node.path) for node in nodes})

    def nodes_for_root(self, root_id: str) -> list[NodeRecord]:
        """Nodes seen under ``root_id``, by path then node_id."""
        return self._listing("nodes_for_root", "nodes", NodeRecord, lambda row: row["root_id"] == root_id)

    def save_targets(self, records: Iterable[TargetRecord]) -> None:
        """Upsert targets keyed by target_key; ``RECORD_INVALID`` (nothing written)."""
        self._write("save_targets", [("targets", [validated(record, TargetRecord) for record in records])])

    def get_target(self, target_key: str) -> TargetRecord | None:
        """The target of ``target_key``, or None."""
        found = self._listing(
            "list_targets", "targets", TargetRecord, lambda row: row["target_key"] == target_key
        )
        return found[0] if found else None

    def list_targets(self) -> list[TargetRecord]:
        """Every target, by target_key."""
        return self._listing("list_targets", "targets", TargetRecord)

    def save_tree(self, record: TreeRecord) -> None:
        """Upsert one tree keyed by root_id; ``RECORD_INVALID`` (nothing written)."""
        self._write("save_tree", [("trees", [validated(record, TreeRecord)])])

    def get_tree(self, root_id: str) -> TreeRecord | None:
        """The tree ``root_id``, or None."""
        found = self._listing("list_trees", "trees", TreeRecord, lambda row: row["root_id"] == root_id)
        return found[0] if found else None

    def list_trees(self) -> list[TreeRecord]:
        """Every registered tree, by root_path then root_id."""
        return self._listing("list_trees", "trees", TreeRecord)

    # --- threads and turns -----------------------------------------------------------

    def save_thread(self, record: ThreadRecord) -> None:
        """Upsert one thread keyed by thread_id; ``RECORD_INVALID``."""
        self._write("save_thread", [("threads", [validated(record, ThreadRecord)])])

    def add_thread(self, record: ThreadRecord) -> ThreadRecord:
        """Insert a thread unless its thread_id is recorded; returns the thread as stored."""
        thread = validated(record, ThreadRecord)
        with self._contents.lock:
            rows = self._contents.tables["threads"]
            row = rows.setdefault((thread.thread_id,), thread.model_dump())
            return ThreadRecord.model_validate(row)

    def get_thread(self, thread_id: str) -> ThreadRecord | None:
        """The thread ``thread_id``, or None."""
        found = self._listing(
            "list_threads", "threads", ThreadRecord, lambda row: row["thread_id"] == thread_id
        )
        return found[0] if found else None

    def list_threads(self, workflow_id: str | None = None, status: str | None = None) -> list[ThreadRecord]:
        """Threads, optionally of one workflow and/or status, by target_path then thread_id."""

        def where(row: Row) -> bool:
            return (workflow_id is None or row["workflow_id"] == workflow_id) and (
                status is None or row["status"] == status
            )

        return self._listing("list_threads", "threads", ThreadRecord, where)

    def commit_turn(self, commit: TurnCommit) -> None:
        """Upsert the thread and every record of one turn attempt, all or nothing.

        A turn of a parallel segment (its record carries ``segment``) has its thread row
        merged with the stored one first (`merged_thread`). Raises ``RECORD_INVALID`` and
        ``RECORD_INTEGRITY``; nothing is written on either.
        """
        checked = check_turn_commit(commit)
        if checked.turn.segment is None:
            self._write("commit_turn", checked.rows())
            return
        # A turn of a parallel segment: its thread row is merged with the stored one
        # (`merged_thread`), sibling commits one at a time.
        with self._contents.merge_lock:
            thread_id = checked.thread.thread_id
            stored = self.get_thread(thread_id)
            latest = self.latest_turns(thread_id).values()
            checked = checked.with_thread(merged_thread(stored, checked.thread, checked.turn, latest))
            self._write("commit_turn", checked.rows())

    def commit_turns(self, commits: Iterable[TurnCommit]) -> int:
        """Upsert the records of many turn attempts, all or nothing; returns how many commits."""
        checked = [check_turn_commit(commit) for commit in commits]
        self._write("commit_turns", [batch for turn in checked for batch in turn.rows()])
        return len(checked)

    def _of_thread(self, listing: str, name: str, model: type[RecordT], thread_id: str) -> list[RecordT]:
        return self._listing(listing, name, model, lambda row: row["thread_id"] == thread_id)

    def turns_for_thread(self, thread_id: str) -> list[TurnRecord]:
        """Every turn attempt of a thread, by turn_seq, attempt, turn_id."""
        return self._of_thread("turns_for_thread", "turns", TurnRecord, thread_id)

    def latest_turns(self, thread_id: str) -> dict[str, TurnRecord]:
        """turn_id -> the record of its highest attempt, in turn_seq order."""
        return latest_by_turn(self.turns_for_thread(thread_id))

    def turns_for_request(self, request_digest: str) -> list[TurnRecord]:
        """Every turn attempt recorded with ``request_digest``, oldest first."""
        return self._listing(
            "turns_for_request", "turns", TurnRecord, lambda row: row["request_digest"] == request_digest
        )

    def gates_for_thread(self, thread_id: str) -> list[GateRecord]:
        """Gate results of a thread, by evaluated_at_ms, attempt, gate_record_id."""
        return self._of_thread("gates_for_thread", "gates", GateRecord, thread_id)

    def prompt_links_for_thread(self, thread_id: str) -> list[PromptLinkRecord]:
        """Prompt links of a thread, by created_at_ms, prompt_link_id."""
        return self._of_thread("prompt_links_for_thread", "prompt_links", PromptLinkRecord, thread_id)

    def artifact_links_for_thread(self, thread_id: str) -> list[ArtifactLinkRecord]:
        """Artifact links of a thread, by created_at_ms, attempt, artifact_link_id."""
        return self._of_thread("artifact_links_for_thread", "artifact_links", ArtifactLinkRecord, thread_id)

    # --- frames and references -------------------------------------------------------

    def save_frame(self, record: FrameRecord) -> None:
        """Upsert one frame keyed by frame_id; ``RECORD_INVALID``, ``RECORD_INTEGRITY``."""
        self._write("save_frame", [("frames", [validated(record, FrameRecord)])])

    def head_frame(self, node_id: str, frame_type: str) -> FrameRecord | None:
        """The latest frame of ``frame_type`` on ``node_id``: newest created_at_ms, then highest frame_id."""
        frames = self._listing(
            "head_frame",
            "frames",
            FrameRecord,
            lambda row: row["node_id"] == node_id and row["frame_type"] == frame_type,
        )
        return frames[-1] if frames else None

    def get_frame(self, frame_id: str) -> FrameRecord | None:
        """The frame ``frame_id``, or None."""
        with self._contents.lock:
            row = self._contents.tables["frames"].get((frame_id,))
        return None if row is None else FrameRecord.model_validate(row)

    def frame_artifact_ids(self, frame_type: str) -> set[str]:
        """Artifact ids of every frame of ``frame_type``."""
        return {
            row["artifact_id"] for row in self._rows("frames", lambda row: row["frame_type"] == frame_type)
        }

    def head_frames(self) -> list[FrameRecord]:
        """The head frame of every (node_id, frame_type): the last under the `head_frame` order."""
        heads: dict[tuple[str, str], FrameRecord] = {}
        for frame in self._listing("head_frame", "frames", FrameRecord):
            heads[(frame.node_id, frame.frame_type)] = frame
        return [heads[pair] for pair in sorted(heads)]

    def list_prompt_links(self) -> list[PromptLinkRecord]:
        """Every prompt link, by prompt_link_id."""
        return self._listing("list_prompt_links", "prompt_links", PromptLinkRecord)

    def list_artifact_links(self) -> list[ArtifactLinkRecord]:
        """Every artifact link, by artifact_link_id."""
        return self._listing("list_artifact_links", "artifact_links", ArtifactLinkRecord)

    def referenced_artifact_ids(self) -> set[str]:
        """Every artifact id any record refers to; CAS objects outside this set are orphans."""
        found: set[str] = set()
        for name, column in (*ARTIFACT_REFERENCE_COLUMNS, PINNED_PROFILE_COLUMN):
            found.update(row.get(column) for row in self._rows(name) if row.get(column) is not None)
        list_table, list_column = ARTIFACT_LIST_COLUMN
        for row in self._rows(list_table):
            found.update(row[list_column] or ())
        return found

    def frames_for_thread(self, thread_id: str) -> list[FrameRecord]:
        """Frames a thread produced, by created_at_ms, frame_id."""
        return self._of_thread("frames_for_thread", "frames", FrameRecord, thread_id)

    def delete_threads(self, expected_updated_at_ms: Mapping[str, int]) -> list[str]:
        """Delete unchanged threads and their history under one lock; returns the deleted ids, sorted."""
        with self._contents.lock:
            threads = self._contents.tables["threads"]
            doomed = {
                thread_id
                for thread_id, updated_at_ms in expected_updated_at_ms.items()
                if (row := threads.get((thread_id,))) is not None and row["updated_at_ms"] == updated_at_ms
            }
            if not doomed:
                return []
            for name, table in self._contents.tables.items():
                if name == "threads" or _SPECS[name].references_thread or name == "frames":
                    for key in [key for key, row in table.items() if row["thread_id"] in doomed]:
                        del table[key]
            for thread_id in doomed:
                self._contents.leases.pop(thread_id, None)
        return sorted(doomed)

    # --- retention: tombstones and holds -------------------------------------------------

    def add_tombstones(self, records: Iterable[TombstoneRecord]) -> int:
        """Upsert tombstones keyed by artifact_id, all or nothing; returns how many distinct ids."""
        tombstones = [validated(record, TombstoneRecord) for record in records]
        self._write("add_tombstones", [("tombstones", tombstones)])
        return len({tombstone.artifact_id for tombstone in tombstones})

    def drop_tombstones(self, artifact_ids: Iterable[str]) -> int:
        """Remove the tombstones of ``artifact_ids``; returns how many went."""
        with self._contents.lock:
            table = self._contents.tables["tombstones"]
            return sum(1 for aid in set(artifact_ids) if table.pop((aid,), None) is not None)

    def get_tombstone(self, artifact_id: str) -> TombstoneRecord | None:
        """The tombstone of ``artifact_id``, or None."""
        with self._contents.lock:
            row = self._contents.tables["tombstones"].get((artifact_id,))
        return None if row is None else TombstoneRecord.model_validate(row)

    def tombstones_for(self, artifact_ids: Iterable[str]) -> dict[str, TombstoneRecord]:
        """artifact_id -> tombstone for those of ``artifact_ids`` that have one."""
        with self._contents.lock:
            table = self._contents.tables["tombstones"]
            rows = [table[(aid,)] for aid in set(artifact_ids) if (aid,) in table]
        return {row["artifact_id"]: TombstoneRecord.model_validate(row) for row in rows}

    def list_tombstones(
        self, workflow_id: str | None = None, artifact_class: str | None = None
    ) -> list[TombstoneRecord]:
        """Tombstones, optionally of one workflow and/or class, by deleted_at_ms then artifact_id."""

        def where(row: Row) -> bool:
            return (workflow_id is None or row["workflow_id"] == workflow_id) and (
                artifact_class is None or row["artifact_class"] == artifact_class
            )

        return self._listing("list_tombstones", "tombstones", TombstoneRecord, where)

    def add_hold(self, record: HoldRecord) -> None:
        """Upsert one hold keyed by hold_id; ``RECORD_INVALID`` (nothing written)."""
        self._write("add_hold", [("holds", [validated(record, HoldRecord)])])

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold ``hold_id``, or None."""
        with self._contents.lock:
            row = self._contents.tables["holds"].get((hold_id,))
        return None if row is None else HoldRecord.model_validate(row)

    def release_hold(self, hold_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``released_at_ms`` (default now) of an active hold; False if none was active."""
        at = now_ms() if at_ms is None else at_ms
        with self._contents.lock:
            holds = self._contents.tables["holds"]
            row = holds.get((hold_id,))
            if row is None or row["released_at_ms"] is not None:
                return False
            holds[(hold_id,)] = {**row, "released_at_ms": at}
            return True

    @contextmanager
    def sweep_lock(self) -> Iterator[None]:
        """No lock: an in-memory store belongs to one process (see `RecordStore.sweep_lock`)."""
        yield

    def active_holds(self) -> list[HoldRecord]:
        """Holds not released, by created_at_ms then hold_id."""
        return self._listing("active_holds", "holds", HoldRecord, lambda row: row["released_at_ms"] is None)

    # --- annotations: log and view -----------------------------------------------------

    def append_annotations(
        self, frame_id: str, changes: Mapping[str, str | None], *, domain: str, at_ms: int
    ) -> list[AnnotationEventRecord]:
        """Append one event per changed key and update the view under one lock; returns the events, by key."""
        with self._contents.lock:
            log = self._contents.tables["annotation_events"]
            last: dict[str, int] = {}
            for (row_frame, row_key, seq), _row in log.items():
                if row_frame == frame_id and isinstance(changes, Mapping) and row_key in changes:
                    last[row_key] = max(last.get(row_key, 0), seq)
            events = annotation_events_for(frame_id, changes, domain=domain, at_ms=at_ms, last_seq=last)
            view = self._contents.tables["annotations"]
            for event in events:
                log[(event.frame_id, event.key, event.seq)] = event.model_dump()
                row = view_row(event)
                if row is None:
                    view.pop((event.frame_id, event.key), None)
                else:
                    view[(event.frame_id, event.key)] = row.model_dump()
        return events

    def annotation_events(self, frame_id: str, key: str | None = None) -> list[AnnotationEventRecord]:
        """The log of ``frame_id`` (optionally of one key), by key then seq."""
        return self._listing(
            "annotation_events",
            "annotation_events",
            AnnotationEventRecord,
            lambda row: row["frame_id"] == frame_id and (key is None or row["key"] == key),
        )

    def current_annotations(self, frame_id: str) -> dict[str, AnnotationRecord]:
        """key -> current view row of ``frame_id``'s annotation keys that have a value, by key."""
        rows = self._rows("annotations", lambda row: row["frame_id"] == frame_id)
        return {
            row["key"]: AnnotationRecord.model_validate(row) for row in sorted(rows, key=lambda r: r["key"])
        }

    def fold_annotation_events(self, cutoffs: Mapping[str, int]) -> int:
        """Fold each key's events older than its cutoff into one snapshot, under one lock; returns events removed."""
        limits = check_fold_cutoffs(cutoffs)
        with self._contents.lock:
            log = self._contents.tables["annotation_events"]
            old = [
                AnnotationEventRecord.model_validate(row)
                for row in log.values()
                if row["key"] in limits and row["at_ms"] < limits[row["key"]]
            ]
            removed = 0
            for run, snapshot in fold_plan(old):
                for event in run:
                    del log[(event.frame_id, event.key, event.seq)]
                log[(snapshot.frame_id, snapshot.key, snapshot.seq)] = snapshot.model_dump()
                removed += len(run) - 1
        return removed

    # --- keyring: KEKs and data keys ------------------------------------------------------

    def keyring_meta(self, name: str) -> bytes | None:
        """The keyring's stored value ``name``, or None."""
        with self._contents.lock:
            return self._contents.keyring_meta.get(name)

    def claim_keyring_meta(self, name: str, value: bytes) -> bytes:
        """Store ``value`` under ``name`` unless one is there; returns the stored value; ``RECORD_INVALID``."""
        check_keyring_meta(name, value)
        with self._contents.lock:
            return self._contents.keyring_meta.setdefault(name, bytes(value))

    def add_kek(self, record: KekRecord) -> KekRecord:
        """Insert a KEK unless its kek_id is stored; returns the stored one; ``RECORD_INVALID``."""
        kek = validated(record, KekRecord)
        with self._contents.lock:
            row = self._contents.tables["keks"].setdefault((kek.kek_id,), kek.model_dump())
            return KekRecord.model_validate(row)

    def get_kek(self, kek_id: str) -> KekRecord | None:
        """The KEK ``kek_id``, or None."""
        with self._contents.lock:
            row = self._contents.tables["keks"].get((kek_id,))
        return None if row is None else KekRecord.model_validate(row)

    def list_keks(self, artifact_class: str | None = None) -> list[KekRecord]:
        """KEKs (optionally of one class), by artifact_class, period_start_ms, generation, kek_id."""
        return self._listing(
            "list_keks",
            "keks",
            KekRecord,
            None if artifact_class is None else lambda row: row["artifact_class"] == artifact_class,
        )

    def update_kek(self, kek_id: str, *, expected_state: str, **changes: object) -> KekRecord | None:
        """Set ``changes`` on the KEK if its state is still ``expected_state`` (under the lock); the new record, or None.

        Raises ``RECORD_INVALID`` (nothing written), as `check_kek_changes` says or when
        the changed record fails validation as a whole.
        """
        values = check_kek_changes(kek_id, expected_state, changes)
        with self._contents.lock:
            keks = self._contents.tables["keks"]
            row = keks.get((kek_id,))
            if row is None or row["state"] != expected_state:
                return None
            try:
                kek = KekRecord.model_validate({**row, **values})
            except ValidationError as exc:
                raise RecordError(
                    RECORD_INVALID, f"KekRecord fails validation: {field_errors(exc)}", kek_id=kek_id
                ) from exc
            keks[(kek_id,)] = kek.model_dump()
            return kek

    def claim_data_keys(self, records: Iterable[DataKeyRecord]) -> dict[str, DataKeyRecord]:
        """Insert each data key unless its artifact_id has one, under one lock; artifact_id -> the stored record.

        Raises ``RECORD_INVALID`` (nothing written).
        """
        keys = claimed_data_keys(records)
        with self._contents.lock:
            table = self._contents.tables["data_keys"]
            rows = {key.artifact_id: table.setdefault((key.artifact_id,), key.model_dump()) for key in keys}
        return {artifact_id: DataKeyRecord.model_validate(row) for artifact_id, row in rows.items()}

    def data_keys_for(self, artifact_ids: Iterable[str]) -> dict[str, DataKeyRecord]:
        """artifact_id -> data key, for those of ``artifact_ids`` that have one."""
        with self._contents.lock:
            table = self._contents.tables["data_keys"]
            rows = [table[(aid,)] for aid in set(artifact_ids) if (aid,) in table]
        return {row["artifact_id"]: DataKeyRecord.model_validate(row) for row in rows}

    def data_keys_under(
        self, kek_ids: Iterable[str], *, after_artifact_id: str | None = None, limit: int = 1000
    ) -> list[DataKeyRecord]:
        """At most ``limit`` data keys wrapped by any of ``kek_ids``, by artifact_id, after ``after_artifact_id``.

        Raises ``RECORD_INVALID`` (a limit that is not a positive int).
        """
        check_page_limit(limit)
        wanted = set(kek_ids)

        def where(row: Row) -> bool:
            return row["kek_id"] in wanted and (
                after_artifact_id is None or row["artifact_id"] > after_artifact_id
            )

        return self._listing("data_keys_under", "data_keys", DataKeyRecord, where)[:limit]

    def rewrap_data_keys(
        self, records: Iterable[DataKeyRecord], *, expected_kek_ids: Mapping[str, str]
    ) -> int:
        """Move each data key whose stored kek_id is still the expected one, under one lock; how many moved.

        ``rewrapped_at_ms`` is the record's, or now (ms); artifact_class and created_at_ms
        stay. Raises ``RECORD_INVALID`` (nothing written).
        """
        changes = rewraps(records, expected_kek_ids, now_ms())
        moved = 0
        with self._contents.lock:
            table = self._contents.tables["data_keys"]
            for change in changes:
                row = table.get((change.artifact_id,))
                if row is None or row["kek_id"] != change.expected_kek_id:
                    continue
                table[(change.artifact_id,)] = {
                    **row,
                    "kek_id": change.kek_id,
                    "wrapped_key": change.wrapped_key,
                    "rewrapped_at_ms": change.rewrapped_at_ms,
                }
                moved += 1
        return moved

    def drop_data_keys(self, artifact_ids: Iterable[str]) -> int:
        """Remove the data keys of ``artifact_ids``; returns how many went."""
        with self._contents.lock:
            table = self._contents.tables["data_keys"]
            return sum(1 for aid in set(artifact_ids) if table.pop((aid,), None) is not None)

    def count_data_keys(self) -> dict[str, int]:
        """kek_id -> how many data keys it wraps; KEKs wrapping none are absent."""
        counts: dict[str, int] = {}
        for row in self._rows("data_keys"):
            counts[row["kek_id"]] = counts.get(row["kek_id"], 0) + 1
        return counts

    # --- audit trail -------------------------------------------------------------------

    def append_audit_record(self, build: AuditBuilder) -> AuditEventRecord:
        """Append ``build(seq, head_hash)`` at the head of the trail, under the store's lock; returns it.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY`` (event_id taken).
        """
        with self._contents.lock:
            table = self._contents.tables["audit_events"]
            head = table[max(table)] if table else None
            seq, prev_hash = (1, None) if head is None else (head["seq"] + 1, head["event_hash"])
            event = check_audit_record(build(seq, prev_hash), seq, prev_hash)
            if any(row["event_id"] == event.event_id for row in table.values()):
                raise RecordError(
                    RECORD_INTEGRITY,
                    f"append_audit_record violates a record constraint: event_id {event.event_id} is taken",
                    action="append_audit_record",
                )
            table[(seq,)] = event.model_dump()
        return event

    def audit_records(
        self,
        *,
        after_seq: int = 0,
        since_ms: int | None = None,
        grant_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEventRecord]:
        """Audit events with seq > ``after_seq``, by seq, optionally since ``since_ms`` and of one grant; at most ``limit``."""
        check_audit_query(after_seq, limit)

        def where(row: Row) -> bool:
            return (
                row["seq"] > after_seq
                and (since_ms is None or row["at_ms"] >= since_ms)
                and (grant_id is None or row["grant_id"] == grant_id)
            )

        found = self._listing("audit_records", "audit_events", AuditEventRecord, where)
        return found if limit is None else found[:limit]

    def audit_records_with_hashes(self, event_hashes: Iterable[str]) -> list[AuditEventRecord]:
        """The audit events whose event_hash is one of ``event_hashes``, by seq."""
        wanted = set(event_hashes)
        return self._listing(
            "audit_records", "audit_events", AuditEventRecord, lambda row: row["event_hash"] in wanted
        )

    # --- thread leases -----------------------------------------------------------------

    def acquire_lease(
        self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None
    ) -> ThreadLease:
        """Take the lease if free, expired or ``holder``'s; returns the lease as stored (see the protocol)."""
        check_lease_args(thread_id, holder, ttl_ms)
        at = now_ms() if at_ms is None else at_ms
        with self._contents.lock:
            current = self._contents.leases.get(thread_id)
            if current is None or current.holder == holder or current.expires_at_ms <= at:
                current = ThreadLease(thread_id=thread_id, holder=holder, expires_at_ms=at + ttl_ms)
                self._contents.leases[thread_id] = current
            return current

    def renew_lease(self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None) -> bool:
        """Extend ``holder``'s lease to ``at_ms + ttl_ms``; False when it holds it no more."""
        check_lease_args(thread_id, holder, ttl_ms)
        at = now_ms() if at_ms is None else at_ms
        with self._contents.lock:
            current = self._contents.leases.get(thread_id)
            if current is None or current.holder != holder:
                return False
            self._contents.leases[thread_id] = ThreadLease(thread_id, holder, at + ttl_ms)
            return True

    def release_lease(self, thread_id: str, holder: str) -> bool:
        """Drop ``holder``'s lease of ``thread_id``; False when ``holder`` did not hold it."""
        with self._contents.lock:
            current = self._contents.leases.get(thread_id)
            if current is None or current.holder != holder:
                return False
            del self._contents.leases[thread_id]
            return True

    # --- identities and grants -----------------------------------------------------------

    def prompt_links_for_artifact(self, artifact_id: str) -> list[PromptLinkRecord]:
        """Prompt links naming ``artifact_id`` as rendered prompt or context, by prompt_link_id."""
        return self._listing(
            "prompt_links_for_artifact",
            "prompt_links",
            PromptLinkRecord,
            lambda row: artifact_id in (row["rendered_prompt_artifact_id"], row["context_artifact_id"]),
        )

    def add_identity(self, record: IdentityRecord) -> IdentityRecord:
        """Insert an identity unless its name is registered; returns the stored one; ``RECORD_INVALID``."""
        identity = validated(record, IdentityRecord)
        with self._contents.lock:
            row = self._contents.tables["identities"].setdefault((identity.name,), identity.model_dump())
            return IdentityRecord.model_validate(row)

    def get_identity(self, name: str) -> IdentityRecord | None:
        """The identity ``name``, or None."""
        with self._contents.lock:
            row = self._contents.tables["identities"].get((name,))
        return None if row is None else IdentityRecord.model_validate(row)

    def list_identities(self) -> list[IdentityRecord]:
        """Every identity, by name."""
        return self._listing("list_identities", "identities", IdentityRecord)

    def add_activation(self, record: ActivationRecord) -> tuple[ActivationRecord, bool]:
        """Insert an activation unless its activation_id is recorded; the stored one and whether it is new; ``RECORD_INVALID``."""
        activation = validated(record, ActivationRecord)
        with self._contents.lock:
            rows = self._contents.tables["activations"]
            key = (activation.activation_id,)
            inserted = key not in rows
            row = rows.setdefault(key, activation.model_dump())
            return ActivationRecord.model_validate(row), inserted

    def list_activations(self, source_workflow_id: str | None = None) -> list[ActivationRecord]:
        """Recorded activations (of ``source_workflow_id`` when given), by created_at_ms then activation_id."""
        where = (
            None
            if source_workflow_id is None
            else (lambda row: row["source_workflow_id"] == source_workflow_id)
        )
        return self._listing("list_activations", "activations", ActivationRecord, where)

    def add_grant(self, record: GrantRecord) -> GrantRecord:
        """Insert a grant unless its grant_id is recorded; returns the stored one; ``RECORD_INVALID``."""
        grant = validated(record, GrantRecord)
        with self._contents.lock:
            row = self._contents.tables["grants"].setdefault((grant.grant_id,), grant.model_dump())
            return GrantRecord.model_validate(row)

    def get_grant(self, grant_id: str) -> GrantRecord | None:
        """The grant ``grant_id``, or None."""
        with self._contents.lock:
            row = self._contents.tables["grants"].get((grant_id,))
        return None if row is None else GrantRecord.model_validate(row)

    def list_grants(self) -> list[GrantRecord]:
        """Every recorded grant, by issued_at_ms then grant_id."""
        return self._listing("list_grants", "grants", GrantRecord)

    def revoke_grant(self, grant_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``revoked_at_ms`` (default now) of a grant not yet revoked; False otherwise."""
        at = now_ms() if at_ms is None else at_ms
        with self._contents.lock:
            grants = self._contents.tables["grants"]
            row = grants.get((grant_id,))
            if row is None or row["revoked_at_ms"] is not None:
                return False
            grants[(grant_id,)] = {**row, "revoked_at_ms": at}
            return True

    def use_grant(self, grant_id: str, *, size: int, at_ms: int) -> str:
        """Count one read on the grant under the store's lock; `GRANT_USE_OK` or the refusal; ``RECORD_INVALID``."""
        check_grant_use(grant_id, size, at_ms)
        with self._contents.lock:
            grants = self._contents.tables["grants"]
            row = grants.get((grant_id,))
            grant = None if row is None else GrantRecord.model_validate(row)
            refusal = grant_use_refusal(grant, size, at_ms)
            if refusal is not None:
                return refusal
            assert grant is not None  # no refusal means the grant exists
            grants[(grant_id,)] = grant_used(grant, size, at_ms).model_dump()
            return GRANT_USE_OK


def open_memory_record_store(
    url: str, *, schema: str | None = None, table_prefix: str = "wf_"
) -> MemoryRecordStore:
    """Open ``memory://<name>``; the part after ``://`` is the name (empty: a private store)."""
    return MemoryRecordStore(url.split("://", 1)[1].strip("/"), schema=schema, table_prefix=table_prefix)
