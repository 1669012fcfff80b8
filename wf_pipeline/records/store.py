"""The SQL record store (SQLAlchemy Core): SQLite by default, PostgreSQL by URL.

Writes take canonical record models and re-validate them; reads return models. Every
write is an upsert on the record's deterministic id, so replaying a step rewrites the
same rows instead of adding new ones. The records of one turn commit in one
transaction (``commit_turn``): after a failure none of them is visible. The tables are
migrated to the newest revision when the store opens (`wf_pipeline.records.migrate`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Table, bindparam, case, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from wf_pipeline.errors import (
    RECORD_BAD_OPTION,
    RECORD_INTEGRITY,
    RECORD_INVALID,
    RECORD_SCHEMA_MISMATCH,
    RecordError,
)
from wf_pipeline.metadata.records import (
    SCHEMA_VERSION,
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
from wf_pipeline.records.connection import (
    SQL_NAME_RE,
    create_record_engine,
    parse_url,
    safe_url,
    translated_errors,
)
from wf_pipeline.records.migrate import migrate_to_head
from wf_pipeline.records.protocol import (
    ARTIFACT_LIST_COLUMN,
    ARTIFACT_REFERENCE_COLUMNS,
    GRANT_USE_OK,
    GRANT_USE_RATE,
    ID_CHUNK,
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
    latest_by_turn,
    merged_thread,
    rewraps,
    validated,
    view_row,
)
from wf_pipeline.records.tables import TABLE_SPECS, RecordTables, build_tables

SCHEMA_VERSION_KEY = "schema_version"
_KEYS = {spec.name: spec.key for spec in TABLE_SPECS}


class SqlRecordStore:
    """A `RecordStore` over SQLAlchemy Core.

    Args:
        url: ``sqlite:///<file>``, ``sqlite://`` (in memory) or ``postgresql://...``.
        schema: PostgreSQL schema of the tables (created if missing); None for the default.
        table_prefix: prefix of every table name (``[a-z_][a-z0-9_]*``, or empty).

    Opening migrates the tables to the newest revision. Raises ``RECORD_BAD_URL``,
    ``RECORD_BAD_OPTION``, ``RECORD_UNAVAILABLE``, ``RECORD_SCHEMA_MISMATCH`` (the database
    was written by a newer release).
    """

    def __init__(self, url: str, *, schema: str | None = None, table_prefix: str = "wf_") -> None:
        self._url = parse_url(url)
        self.backend = self._url.get_backend_name()
        if not SQL_NAME_RE.fullmatch(table_prefix) and table_prefix != "":
            raise RecordError(RECORD_BAD_OPTION, "table_prefix must match " + SQL_NAME_RE.pattern)
        if schema is not None:
            if self.backend != "postgresql":
                raise RecordError(RECORD_BAD_OPTION, "a schema is only supported on PostgreSQL")
            if not SQL_NAME_RE.fullmatch(schema):
                raise RecordError(RECORD_BAD_OPTION, "schema must match " + SQL_NAME_RE.pattern)
        self.schema = schema
        self.table_prefix = table_prefix
        self._tables: RecordTables = build_tables(table_prefix, schema)
        self._upserts: dict[str, Any] = {}
        # Sibling turns of one thread commit from worker threads of one process (`commit_turn`).
        self._merge_lock = threading.Lock()
        self._engine: Engine = create_record_engine(self._url)
        try:
            self._open_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The store's URL with any password masked."""
        return safe_url(self._url)

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Dispose of the engine and its pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> SqlRecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlRecordStore({self.url!r})"

    def _open_schema(self) -> None:
        migrate_to_head(self._engine, self._url, schema=self.schema, table_prefix=self.table_prefix)
        schema_meta = self._tables.schema_meta
        with self._reading("open") as conn:
            stored = conn.execute(
                select(schema_meta.c.value).where(schema_meta.c.key == SCHEMA_VERSION_KEY)
            ).scalar_one_or_none()
        # The rows' own format version: a newer release may write rows this code cannot read.
        if stored != str(SCHEMA_VERSION):
            raise RecordError(
                RECORD_SCHEMA_MISMATCH,
                f"record store {self.url} has schema version {stored}, this code reads version {SCHEMA_VERSION}",
                stored=stored,
                expected=SCHEMA_VERSION,
            )

    # --- plumbing --------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        dialect = postgresql if self.backend == "postgresql" else sqlite
        return dialect.insert(table)

    def _upsert(self, conn: Connection, table_name: str, records: Sequence[BaseModel]) -> None:
        if not records:
            return
        key = _KEYS[table_name]
        # One statement may not touch a row twice (PostgreSQL refuses): the last record per key wins.
        rows = list(
            {tuple(row[col] for col in key): row for row in (r.model_dump() for r in records)}.values()
        )
        conn.execute(self._upsert_statement(table_name), rows)

    def _upsert_statement(self, table_name: str) -> Any:
        # Built once per table: constructing it costs more than a small upsert itself.
        cached = self._upserts.get(table_name)
        if cached is None:
            key = _KEYS[table_name]
            table = self._tables[table_name]
            insert = self._insert(table)
            cached = insert.on_conflict_do_update(
                index_elements=list(key),
                set_={
                    column.name: insert.excluded[column.name]
                    for column in table.columns
                    if column.name not in key
                },
            )
            self._upserts[table_name] = cached
        return cached

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        with translated_errors(self._url, action), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        with translated_errors(self._url, action), self._engine.connect() as conn:
            yield conn

    def _select(self, action: str, model: type[RecordT], statement: Any) -> list[RecordT]:
        with self._reading(action) as conn:
            result = conn.execute(statement)
            keys = list(result.keys())
            rows = result.all()
        found = []
        for row in rows:
            # zip over plain tuples: building a dict per row mapping costs more than validating it.
            values = dict(zip(keys, row))
            try:
                found.append(model.model_validate(values))
            except ValidationError as exc:
                # The row's seq, where its table has one, says where a damaged row sits.
                seq = values.get("seq") if isinstance(values.get("seq"), int) else None
                raise RecordError(
                    RECORD_INTEGRITY,
                    f"stored {model.__name__} row{'' if seq is None else f' at seq {seq}'} fails validation "
                    f"during {action}: {field_errors(exc)}",
                    action=action,
                    seq=seq,
                ) from exc
        return found

    def _first(self, action: str, model: type[RecordT], statement: Any) -> RecordT | None:
        found = self._select(action, model, statement.limit(1))
        return found[0] if found else None

    # --- nodes -----------------------------------------------------------------------

    def upsert_nodes(self, records: Iterable[NodeRecord]) -> int:
        """Upsert nodes keyed by (node_id, path); returns how many distinct nodes were written.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        nodes = [validated(record, NodeRecord) for record in records]
        with self._writing("upsert_nodes") as conn:
            self._upsert(conn, "nodes", nodes)
        return len({(node.node_id, node.path) for node in nodes})

    def nodes_for_root(self, root_id: str) -> list[NodeRecord]:
        """Nodes seen under ``root_id``, by path then node_id; ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``."""
        table = self._tables["nodes"]
        statement = (
            select(table).where(table.c.root_id == root_id).order_by(*_order_columns(table, "nodes_for_root"))
        )
        return self._select("nodes_for_root", NodeRecord, statement)

    # --- targets ---------------------------------------------------------------------

    def save_targets(self, records: Iterable[TargetRecord]) -> None:
        """Upsert targets keyed by target_key: the latest registration of a key wins.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        targets = [validated(record, TargetRecord) for record in records]
        with self._writing("save_targets") as conn:
            self._upsert(conn, "targets", targets)

    def get_target(self, target_key: str) -> TargetRecord | None:
        """The target of ``target_key``, or None."""
        table = self._tables["targets"]
        return self._first("get_target", TargetRecord, select(table).where(table.c.target_key == target_key))

    def list_targets(self) -> list[TargetRecord]:
        """Every target, by target_key."""
        table = self._tables["targets"]
        return self._select(
            "list_targets", TargetRecord, select(table).order_by(*_order_columns(table, "list_targets"))
        )

    # --- trees -----------------------------------------------------------------------

    def save_tree(self, record: TreeRecord) -> None:
        """Upsert one tree keyed by root_id: the latest registration wins.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        tree = validated(record, TreeRecord)
        with self._writing("save_tree") as conn:
            self._upsert(conn, "trees", [tree])

    def get_tree(self, root_id: str) -> TreeRecord | None:
        """The tree ``root_id``, or None."""
        table = self._tables["trees"]
        return self._first("get_tree", TreeRecord, select(table).where(table.c.root_id == root_id))

    def list_trees(self) -> list[TreeRecord]:
        """Every registered tree, by root_path then root_id."""
        table = self._tables["trees"]
        return self._select(
            "list_trees", TreeRecord, select(table).order_by(*_order_columns(table, "list_trees"))
        )

    # --- threads ---------------------------------------------------------------------

    def save_thread(self, record: ThreadRecord) -> None:
        """Upsert one thread keyed by thread_id; ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``."""
        thread = validated(record, ThreadRecord)
        with self._writing("save_thread") as conn:
            self._upsert(conn, "threads", [thread])

    def add_thread(self, record: ThreadRecord) -> ThreadRecord:
        """Insert a thread unless recorded (``ON CONFLICT DO NOTHING``); returns the stored one.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``.
        """
        thread = validated(record, ThreadRecord)
        table = self._tables["threads"]
        statement = (
            self._insert(table)
            .values(**thread.model_dump())
            .on_conflict_do_nothing(index_elements=["thread_id"])
        )
        with self._writing("add_thread") as conn:
            conn.execute(statement)
            row = conn.execute(select(table).where(table.c.thread_id == thread.thread_id)).mappings().one()
        try:
            return ThreadRecord.model_validate(dict(row))
        except ValidationError as exc:
            raise RecordError(
                RECORD_INTEGRITY,
                f"stored ThreadRecord row fails validation during add_thread: {field_errors(exc)}",
            ) from exc

    def get_thread(self, thread_id: str) -> ThreadRecord | None:
        """The thread ``thread_id``, or None."""
        table = self._tables["threads"]
        return self._first("get_thread", ThreadRecord, select(table).where(table.c.thread_id == thread_id))

    def list_threads(self, workflow_id: str | None = None, status: str | None = None) -> list[ThreadRecord]:
        """Threads, optionally of one workflow and/or status, by target_path then thread_id."""
        table = self._tables["threads"]
        statement = select(table).order_by(*_order_columns(table, "list_threads"))
        if workflow_id is not None:
            statement = statement.where(table.c.workflow_id == workflow_id)
        if status is not None:
            statement = statement.where(table.c.status == status)
        return self._select("list_threads", ThreadRecord, statement)

    # --- one turn, one transaction ---------------------------------------------------

    def commit_turn(self, commit: TurnCommit) -> None:
        """Upsert the thread and every record of one turn attempt in one transaction.

        A turn of a parallel segment (its record carries ``segment``) has its thread row
        merged with the stored one (`merged_thread`) in the same transaction: the row is
        read ``FOR UPDATE`` on PostgreSQL, and the store's own lock keeps sibling commits
        of this process apart on SQLite (a thread's turns run in one process: its lease).

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY`` (rolled back),
        ``RECORD_UNAVAILABLE``.
        """
        checked = check_turn_commit(commit)
        if checked.turn.segment is None:
            with self._writing("commit_turn") as conn:
                for table_name, records in checked.rows():
                    self._upsert(conn, table_name, records)
            return
        with self._merge_lock, self._writing("commit_turn") as conn:
            checked = checked.with_thread(self._merged_thread(conn, checked.thread, checked.turn))
            for table_name, records in checked.rows():
                self._upsert(conn, table_name, records)

    def _merged_thread(self, conn: Connection, thread: ThreadRecord, turn: TurnRecord) -> ThreadRecord:
        threads, turns = self._tables["threads"], self._tables["turns"]
        statement = select(threads).where(threads.c.thread_id == thread.thread_id)
        if self.backend == "postgresql":
            statement = statement.with_for_update()
        row = conn.execute(statement).mappings().first()
        stored = None if row is None else _stored("commit_turn", ThreadRecord, dict(row))
        attempts = conn.execute(
            select(turns)
            .where(turns.c.thread_id == thread.thread_id)
            .order_by(*_order_columns(turns, "turns_for_thread"))
        ).mappings()
        latest = latest_by_turn(_stored("commit_turn", TurnRecord, dict(r)) for r in attempts)
        return merged_thread(stored, thread, turn, latest.values())

    def commit_turns(self, commits: Iterable[TurnCommit]) -> int:
        """Upsert the records of many turn attempts in one transaction, one executemany per table.

        Returns how many commits were written. Raises ``RECORD_INVALID`` (nothing written),
        ``RECORD_INTEGRITY`` (rolled back), ``RECORD_UNAVAILABLE``.
        """
        checked = [check_turn_commit(commit) for commit in commits]
        by_table: dict[str, list[BaseModel]] = {}
        for turn in checked:
            for table_name, records in turn.rows():
                by_table.setdefault(table_name, []).extend(records)
        with self._writing("commit_turns") as conn:
            # rows() lists parents first, and dicts keep that order across commits.
            for table_name, records in by_table.items():
                self._upsert(conn, table_name, records)
        return len(checked)

    def turns_for_thread(self, thread_id: str) -> list[TurnRecord]:
        """Every turn attempt of a thread, by turn_seq, attempt, turn_id."""
        table = self._tables["turns"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(*_order_columns(table, "turns_for_thread"))
        )
        return self._select("turns_for_thread", TurnRecord, statement)

    def latest_turns(self, thread_id: str) -> dict[str, TurnRecord]:
        """turn_id -> the record of its highest attempt, in turn_seq order."""
        return latest_by_turn(self.turns_for_thread(thread_id))

    def turns_for_request(self, request_digest: str) -> list[TurnRecord]:
        """Every turn attempt recorded with ``request_digest``, oldest first (an indexed lookup)."""
        table = self._tables["turns"]
        statement = (
            select(table)
            .where(table.c.request_digest == request_digest)
            .order_by(*_order_columns(table, "turns_for_request"))
        )
        return self._select("turns_for_request", TurnRecord, statement)

    def gates_for_thread(self, thread_id: str) -> list[GateRecord]:
        """Gate results of a thread, by evaluated_at_ms, attempt, gate_record_id."""
        table = self._tables["gates"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(*_order_columns(table, "gates_for_thread"))
        )
        return self._select("gates_for_thread", GateRecord, statement)

    def prompt_links_for_thread(self, thread_id: str) -> list[PromptLinkRecord]:
        """Prompt links of a thread, by created_at_ms, prompt_link_id."""
        table = self._tables["prompt_links"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(*_order_columns(table, "prompt_links_for_thread"))
        )
        return self._select("prompt_links_for_thread", PromptLinkRecord, statement)

    def artifact_links_for_thread(self, thread_id: str) -> list[ArtifactLinkRecord]:
        """Artifact links of a thread, by created_at_ms, attempt, artifact_link_id."""
        table = self._tables["artifact_links"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(*_order_columns(table, "artifact_links_for_thread"))
        )
        return self._select("artifact_links_for_thread", ArtifactLinkRecord, statement)

    # --- frames ----------------------------------------------------------------------

    def save_frame(self, record: FrameRecord) -> None:
        """Upsert one frame keyed by frame_id; ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``."""
        frame = validated(record, FrameRecord)
        with self._writing("save_frame") as conn:
            self._upsert(conn, "frames", [frame])

    def head_frame(self, node_id: str, frame_type: str) -> FrameRecord | None:
        """The latest frame of ``frame_type`` on ``node_id``: newest created_at_ms, then highest frame_id."""
        table = self._tables["frames"]
        statement = (
            select(table)
            .where(table.c.node_id == node_id, table.c.frame_type == frame_type)
            .order_by(*(column.desc() for column in _order_columns(table, "head_frame")))
        )
        return self._first("head_frame", FrameRecord, statement)

    def get_frame(self, frame_id: str) -> FrameRecord | None:
        """The frame ``frame_id``, or None; ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``."""
        table = self._tables["frames"]
        return self._first("get_frame", FrameRecord, select(table).where(table.c.frame_id == frame_id))

    def frame_artifact_ids(self, frame_type: str) -> set[str]:
        """Artifact ids of every frame of ``frame_type`` (the outputs a workflow has produced)."""
        table = self._tables["frames"]
        with self._reading("frame_artifact_ids") as conn:
            rows = conn.execute(
                select(table.c.artifact_id).where(table.c.frame_type == frame_type).distinct()
            )
            return {row[0] for row in rows}

    def head_frames(self) -> list[FrameRecord]:
        """The head frame of every (node_id, frame_type), by node_id then frame_type.

        Frames come newest last per pair under the `head_frame` order, so the last one
        seen per pair is its head (the same rule as `head_frame`, applied in one scan).
        """
        table = self._tables["frames"]
        statement = select(table).order_by(
            table.c.node_id, table.c.frame_type, *_order_columns(table, "head_frame")
        )
        heads: dict[tuple[str, str], FrameRecord] = {}
        for frame in self._select("head_frames", FrameRecord, statement):
            heads[(frame.node_id, frame.frame_type)] = frame
        return list(heads.values())

    def list_prompt_links(self) -> list[PromptLinkRecord]:
        """Every prompt link, by prompt_link_id."""
        table = self._tables["prompt_links"]
        statement = select(table).order_by(*_order_columns(table, "list_prompt_links"))
        return self._select("list_prompt_links", PromptLinkRecord, statement)

    def list_artifact_links(self) -> list[ArtifactLinkRecord]:
        """Every artifact link, by artifact_link_id."""
        table = self._tables["artifact_links"]
        statement = select(table).order_by(*_order_columns(table, "list_artifact_links"))
        return self._select("list_artifact_links", ArtifactLinkRecord, statement)

    # --- retention: tombstones and holds -------------------------------------------------

    def add_tombstones(self, records: Iterable[TombstoneRecord]) -> int:
        """Upsert tombstones keyed by artifact_id in one transaction (one executemany).

        Returns how many distinct artifact ids were written. Raises ``RECORD_INVALID``
        (nothing written), ``RECORD_UNAVAILABLE``.
        """
        tombstones = [validated(record, TombstoneRecord) for record in records]
        with self._writing("add_tombstones") as conn:
            self._upsert(conn, "tombstones", tombstones)
        return len({tombstone.artifact_id for tombstone in tombstones})

    def drop_tombstones(self, artifact_ids: Iterable[str]) -> int:
        """Delete the tombstones of ``artifact_ids`` in one transaction (``ID_CHUNK`` ids a statement).

        Returns how many rows went. Raises ``RECORD_UNAVAILABLE``.
        """
        return self._delete_by_artifact("drop_tombstones", "tombstones", artifact_ids)

    def _delete_by_artifact(self, action: str, table_name: str, artifact_ids: Iterable[str]) -> int:
        # Rows keyed by artifact id, deleted in one transaction, ID_CHUNK ids a statement.
        table = self._tables[table_name]
        wanted = sorted(set(artifact_ids))
        dropped = 0
        if not wanted:
            return 0
        with self._writing(action) as conn:
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[start : start + ID_CHUNK]
                dropped += conn.execute(delete(table).where(table.c.artifact_id.in_(chunk))).rowcount or 0
        return dropped

    def get_tombstone(self, artifact_id: str) -> TombstoneRecord | None:
        """The tombstone of ``artifact_id``, or None."""
        table = self._tables["tombstones"]
        return self._first(
            "get_tombstone", TombstoneRecord, select(table).where(table.c.artifact_id == artifact_id)
        )

    def tombstones_for(self, artifact_ids: Iterable[str]) -> dict[str, TombstoneRecord]:
        """artifact_id -> tombstone for those of ``artifact_ids`` that have one (``ID_CHUNK`` ids a query)."""
        return self._by_artifact("tombstones_for", "tombstones", TombstoneRecord, artifact_ids)

    def _by_artifact(
        self, action: str, table_name: str, model: type[RecordT], artifact_ids: Iterable[str]
    ) -> dict[str, RecordT]:
        # Rows keyed by artifact id, read ID_CHUNK ids a query.
        table = self._tables[table_name]
        wanted = sorted(set(artifact_ids))
        found: dict[str, RecordT] = {}
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            statement = select(table).where(table.c.artifact_id.in_(chunk))
            for record in self._select(action, model, statement):
                found[record.artifact_id] = record  # type: ignore[attr-defined]
        return found

    def list_tombstones(
        self, workflow_id: str | None = None, artifact_class: str | None = None
    ) -> list[TombstoneRecord]:
        """Tombstones, optionally of one workflow and/or class, by deleted_at_ms then artifact_id."""
        table = self._tables["tombstones"]
        statement = select(table).order_by(*_order_columns(table, "list_tombstones"))
        if workflow_id is not None:
            statement = statement.where(table.c.workflow_id == workflow_id)
        if artifact_class is not None:
            statement = statement.where(table.c.artifact_class == artifact_class)
        return self._select("list_tombstones", TombstoneRecord, statement)

    def add_hold(self, record: HoldRecord) -> None:
        """Upsert one hold keyed by hold_id; ``RECORD_INVALID`` (nothing written), ``RECORD_UNAVAILABLE``."""
        hold = validated(record, HoldRecord)
        with self._writing("add_hold") as conn:
            self._upsert(conn, "holds", [hold])

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold ``hold_id``, or None."""
        table = self._tables["holds"]
        return self._first("get_hold", HoldRecord, select(table).where(table.c.hold_id == hold_id))

    def release_hold(self, hold_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``released_at_ms`` of an active hold (one conditional UPDATE); False if none was active."""
        at = now_ms() if at_ms is None else at_ms
        table = self._tables["holds"]
        with self._writing("release_hold") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.hold_id == hold_id, table.c.released_at_ms.is_(None))
                .values(released_at_ms=at)
            )
        return result.rowcount == 1

    @contextmanager
    def sweep_lock(self) -> Iterator[None]:
        """See `RecordStore.sweep_lock`: a PostgreSQL session advisory lock, none on SQLite.

        The lock is held by one pooled connection for the whole sweep; the sweep's own
        reads and writes use other connections. Raises ``RECORD_UNAVAILABLE``.
        """
        if self.backend != "postgresql":
            yield  # a SQLite file belongs to one home, whose file lock serializes its sweeps
            return
        key = self._sweep_lock_key()
        conn = self._engine.connect()
        try:
            with translated_errors(self._url, "sweep_lock"):
                conn.execute(select(func.pg_advisory_lock(key)))
                conn.commit()  # session-level: the lock outlives the transaction
            yield
        finally:
            try:
                with translated_errors(self._url, "sweep_unlock"):
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
            finally:
                conn.close()

    def _sweep_lock_key(self) -> int:
        return self._lock_key("sweep")

    def _lock_key(self, purpose: str) -> int:
        # A signed 64-bit advisory-lock key per (purpose, schema, prefix): stores sharing one
        # database lock apart, and the sweep and the audit trail never wait for each other.
        name = f"wf_pipeline.{purpose}:{self.schema or ''}:{self.table_prefix}".encode()
        return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)

    def active_holds(self) -> list[HoldRecord]:
        """Holds not released, by created_at_ms then hold_id."""
        table = self._tables["holds"]
        statement = (
            select(table)
            .where(table.c.released_at_ms.is_(None))
            .order_by(*_order_columns(table, "active_holds"))
        )
        return self._select("active_holds", HoldRecord, statement)

    # --- orphan detection ------------------------------------------------------------

    def referenced_artifact_ids(self) -> set[str]:
        """Every artifact id any record refers to; CAS objects outside this set are orphans."""
        tables = self._tables
        single_columns = [
            tables[table].c[column] for table, column in (*ARTIFACT_REFERENCE_COLUMNS, PINNED_PROFILE_COLUMN)
        ]
        list_table, list_column = ARTIFACT_LIST_COLUMN
        found: set[str] = set()
        with self._reading("referenced_artifact_ids") as conn:
            for column in single_columns:
                found.update(conn.execute(select(column).where(column.is_not(None)).distinct()).scalars())
            for inputs in conn.execute(select(tables[list_table].c[list_column])).scalars():
                found.update(inputs or ())
        return found

    def frames_for_thread(self, thread_id: str) -> list[FrameRecord]:
        """Frames a thread produced, by created_at_ms, frame_id."""
        table = self._tables["frames"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(*_order_columns(table, "frames_for_thread"))
        )
        return self._select("frames_for_thread", FrameRecord, statement)

    # --- archiving ---------------------------------------------------------------------

    def delete_threads(self, expected_updated_at_ms: Mapping[str, int]) -> list[str]:
        """Delete unchanged threads and their history in one transaction; returns the deleted ids, sorted.

        The threads are re-read inside the transaction, so one updated since the caller
        read it stays. Raises ``RECORD_UNAVAILABLE`` (nothing deleted).
        """
        if not expected_updated_at_ms:
            return []
        tables = self._tables
        threads = tables["threads"]
        history = [
            tables[spec.name] for spec in TABLE_SPECS if spec.references_thread or spec.name == "frames"
        ]
        doomed: list[str] = []
        wanted = sorted(expected_updated_at_ms)
        with self._writing("delete_threads") as conn:
            # Chunks keep each IN list under SQLite's bound-parameter limit.
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[start : start + ID_CHUNK]
                rows = conn.execute(
                    select(threads.c.thread_id, threads.c.updated_at_ms)
                    .where(threads.c.thread_id.in_(chunk))
                    .with_for_update()
                )
                ids = [tid for tid, updated in rows if updated == expected_updated_at_ms[tid]]
                if not ids:
                    continue
                for table in [*history, tables.leases]:
                    conn.execute(delete(table).where(table.c.thread_id.in_(ids)))
                conn.execute(delete(threads).where(threads.c.thread_id.in_(ids)))
                doomed.extend(ids)
        return sorted(doomed)

    # --- annotations: log and view -----------------------------------------------------

    def append_annotations(
        self, frame_id: str, changes: Mapping[str, str | None], *, domain: str, at_ms: int
    ) -> list[AnnotationEventRecord]:
        """Append one event per changed key and update the view in one transaction; returns the events, by key.

        Seqs are read inside the transaction; a concurrent append of the same key collides
        on the log's primary key and is refused whole (``RECORD_INTEGRITY``).
        """
        log = self._tables["annotation_events"]
        view = self._tables["annotations"]
        keys = sorted(key for key in changes if isinstance(key, str)) if isinstance(changes, Mapping) else []
        with self._writing("append_annotations") as conn:
            rows = conn.execute(
                select(log.c.key, func.max(log.c.seq))
                .where(log.c.frame_id == frame_id, log.c.key.in_(keys))
                .group_by(log.c.key)
            )
            last = {key: int(seq) for key, seq in rows}
            events = annotation_events_for(frame_id, changes, domain=domain, at_ms=at_ms, last_seq=last)
            conn.execute(self._insert(log), [event.model_dump() for event in events])
            for event in events:
                row = view_row(event)
                if row is None:
                    conn.execute(
                        delete(view).where(view.c.frame_id == event.frame_id, view.c.key == event.key)
                    )
                else:
                    self._upsert(conn, "annotations", [row])
        return events

    def annotation_events(self, frame_id: str, key: str | None = None) -> list[AnnotationEventRecord]:
        """The log of ``frame_id`` (optionally of one key), by key then seq."""
        log = self._tables["annotation_events"]
        statement = (
            select(log).where(log.c.frame_id == frame_id).order_by(*_order_columns(log, "annotation_events"))
        )
        if key is not None:
            statement = statement.where(log.c.key == key)
        return self._select("annotation_events", AnnotationEventRecord, statement)

    def current_annotations(self, frame_id: str) -> dict[str, AnnotationRecord]:
        """key -> current view row of ``frame_id``'s annotation keys that have a value, by key."""
        view = self._tables["annotations"]
        statement = select(view).where(view.c.frame_id == frame_id).order_by(view.c.key)
        return {row.key: row for row in self._select("current_annotations", AnnotationRecord, statement)}

    def fold_annotation_events(self, cutoffs: Mapping[str, int]) -> int:
        """Fold each key's events older than its cutoff into one snapshot, in one transaction; returns events removed."""
        limits = check_fold_cutoffs(cutoffs)
        if not limits:
            return 0
        log = self._tables["annotation_events"]
        removed = 0
        with self._writing("fold_annotation_events") as conn:
            old: list[AnnotationEventRecord] = []
            for key, cutoff in sorted(limits.items()):
                result = conn.execute(select(log).where(log.c.key == key, log.c.at_ms < cutoff))
                old += [
                    _stored("fold_annotation_events", AnnotationEventRecord, dict(row))
                    for row in result.mappings()
                ]
            for run, snapshot in fold_plan(old):
                conn.execute(
                    delete(log).where(
                        log.c.frame_id == snapshot.frame_id,
                        log.c.key == snapshot.key,
                        # The run is a prefix of the key's log (`fold_plan`).
                        log.c.seq <= snapshot.seq,
                    )
                )
                conn.execute(self._insert(log), [snapshot.model_dump()])
                removed += len(run) - 1
        return removed

    # --- keyring: KEKs and data keys ------------------------------------------------------

    def keyring_meta(self, name: str) -> bytes | None:
        """The keyring's stored value ``name``, or None; ``RECORD_UNAVAILABLE``."""
        table = self._tables.keyring_meta
        with self._reading("keyring_meta") as conn:
            value = conn.execute(select(table.c.value).where(table.c.name == name)).scalar_one_or_none()
        return None if value is None else bytes(value)

    def claim_keyring_meta(self, name: str, value: bytes) -> bytes:
        """Store ``value`` under ``name`` unless one is there (``ON CONFLICT DO NOTHING``); returns the stored value.

        Raises ``RECORD_INVALID`` (a name that is not a non-empty str, a value that is not
        bytes), ``RECORD_UNAVAILABLE``.
        """
        check_keyring_meta(name, value)
        table = self._tables.keyring_meta
        statement = (
            self._insert(table).values(name=name, value=value).on_conflict_do_nothing(index_elements=["name"])
        )
        with self._writing("claim_keyring_meta") as conn:
            conn.execute(statement)
            stored = conn.execute(select(table.c.value).where(table.c.name == name)).scalar_one()
        return bytes(stored)

    def add_kek(self, record: KekRecord) -> KekRecord:
        """Insert a KEK unless its kek_id is stored (``ON CONFLICT DO NOTHING``); returns the stored one.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY`` (the stored row
        fails validation), ``RECORD_UNAVAILABLE``.
        """
        kek = validated(record, KekRecord)
        table = self._tables["keks"]
        statement = (
            self._insert(table).values(**kek.model_dump()).on_conflict_do_nothing(index_elements=["kek_id"])
        )
        with self._writing("add_kek") as conn:
            conn.execute(statement)
            row = conn.execute(select(table).where(table.c.kek_id == kek.kek_id)).mappings().one()
        return _stored("add_kek", KekRecord, dict(row))

    def get_kek(self, kek_id: str) -> KekRecord | None:
        """The KEK ``kek_id``, or None; ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``."""
        table = self._tables["keks"]
        return self._first("get_kek", KekRecord, select(table).where(table.c.kek_id == kek_id))

    def list_keks(self, artifact_class: str | None = None) -> list[KekRecord]:
        """KEKs (optionally of one class), by artifact_class, period_start_ms, generation, kek_id."""
        table = self._tables["keks"]
        statement = select(table).order_by(*_order_columns(table, "list_keks"))
        if artifact_class is not None:
            statement = statement.where(table.c.artifact_class == artifact_class)
        return self._select("list_keks", KekRecord, statement)

    def update_kek(self, kek_id: str, *, expected_state: str, **changes: object) -> KekRecord | None:
        """Set ``changes`` on the KEK ``kek_id`` if its state is still ``expected_state``; the new record, or None.

        One ``UPDATE ... WHERE kek_id = :id AND state = :expected`` (the compare-and-set),
        then a read of the row in the same transaction; a result that fails validation as
        a whole rolls back. Raises ``RECORD_INVALID`` (see `check_kek_changes`; nothing
        written), ``RECORD_UNAVAILABLE``.
        """
        values = check_kek_changes(kek_id, expected_state, changes)
        table = self._tables["keks"]
        with self._writing("update_kek") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.kek_id == kek_id, table.c.state == expected_state)
                .values(**values)
            )
            if result.rowcount != 1:
                return None
            row = conn.execute(select(table).where(table.c.kek_id == kek_id)).mappings().one()
            try:
                # Raised inside the transaction, so the update rolls back.
                return KekRecord.model_validate(dict(row))
            except ValidationError as exc:
                raise RecordError(
                    RECORD_INVALID, f"KekRecord fails validation: {field_errors(exc)}", kek_id=kek_id
                ) from exc

    def claim_data_keys(self, records: Iterable[DataKeyRecord]) -> dict[str, DataKeyRecord]:
        """Insert each data key unless its artifact_id has one; returns artifact_id -> the stored record.

        One transaction: one executemany ``INSERT ... ON CONFLICT DO NOTHING RETURNING
        artifact_id`` in artifact_id order (SQLAlchemy sends it as multi-row VALUES
        batches, one round trip per batch), then a ``SELECT`` of the rows it did not
        insert (``ID_CHUNK`` ids a query): those another writer stored first (all of them
        where the database has no ``RETURNING``: SQLite before 3.35). Concurrent
        claims of one artifact all return the row the first committed. Raises
        ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        keys = claimed_data_keys(records)
        if not keys:
            return {}
        table = self._tables["data_keys"]
        found = {key.artifact_id: key for key in keys}
        rows: list[dict[str, Any]] = []
        returning = self._engine.dialect.insert_returning
        with self._writing("claim_data_keys") as conn:
            result = conn.execute(self._claim_statement(returning), [key.model_dump() for key in keys])
            # Without RETURNING (SQLite before 3.35) every row is read back.
            inserted = set(result.scalars()) if returning else set()
            taken = [key.artifact_id for key in keys if key.artifact_id not in inserted]
            for start in range(0, len(taken), ID_CHUNK):
                result = conn.execute(
                    select(table).where(table.c.artifact_id.in_(taken[start : start + ID_CHUNK]))
                )
                names = list(result.keys())
                rows.extend(dict(zip(names, row)) for row in result.all())
        for row in rows:
            found[row["artifact_id"]] = _stored("claim_data_keys", DataKeyRecord, row)
        return found

    def data_keys_for(self, artifact_ids: Iterable[str]) -> dict[str, DataKeyRecord]:
        """artifact_id -> data key, for those of ``artifact_ids`` that have one (``ID_CHUNK`` ids a query)."""
        return self._by_artifact("data_keys_for", "data_keys", DataKeyRecord, artifact_ids)

    def data_keys_under(
        self, kek_ids: Iterable[str], *, after_artifact_id: str | None = None, limit: int = 1000
    ) -> list[DataKeyRecord]:
        """At most ``limit`` data keys wrapped by any of ``kek_ids``, by artifact_id, after ``after_artifact_id``.

        Keyset pagination (``artifact_id > :after ORDER BY artifact_id LIMIT n``): a page
        costs the same wherever it starts, and rows moved meanwhile are neither skipped
        nor repeated. Raises ``RECORD_INVALID`` (a limit that is not a positive int),
        ``RECORD_UNAVAILABLE``.
        """
        check_page_limit(limit)
        wanted = sorted(set(kek_ids))
        if not wanted:
            return []
        table = self._tables["data_keys"]
        statement = (
            select(table)
            .where(table.c.kek_id.in_(wanted))
            .order_by(*_order_columns(table, "data_keys_under"))
            .limit(limit)
        )
        if after_artifact_id is not None:
            statement = statement.where(table.c.artifact_id > after_artifact_id)
        return self._select("data_keys_under", DataKeyRecord, statement)

    def rewrap_data_keys(
        self, records: Iterable[DataKeyRecord], *, expected_kek_ids: Mapping[str, str]
    ) -> int:
        """Move each data key to its record's kek_id and wrapped_key if its stored kek_id is still the expected one.

        One transaction; a row another writer moved meanwhile is left alone (the
        compare-and-set ``WHERE artifact_id = :a AND kek_id = :expected``). SQLite: one
        executemany ``UPDATE``; PostgreSQL: one ``UPDATE ... FROM unnest(arrays)`` (an
        executemany there costs a round trip per row).
        ``rewrapped_at_ms`` is the record's, or now (ms) if it has none; artifact_class
        and created_at_ms stay. Returns how many rows changed. Raises ``RECORD_INVALID``
        (nothing written, see `rewraps`), ``RECORD_UNAVAILABLE``.
        """
        changes = rewraps(records, expected_kek_ids, now_ms())
        if not changes:
            return 0
        with self._writing("rewrap_data_keys") as conn:
            if self.backend == "postgresql":
                moved = conn.execute(
                    self._rewrap_unnest_statement(),
                    {
                        "artifact_ids": [change.artifact_id for change in changes],
                        "expected_kek_ids": [change.expected_kek_id for change in changes],
                        "kek_ids": [change.kek_id for change in changes],
                        "wrapped_keys": [change.wrapped_key for change in changes],
                        "rewrapped_at_ms": [change.rewrapped_at_ms for change in changes],
                    },
                ).rowcount
            else:
                sql, order = self._rewrap_statement()
                parameters = [tuple(getattr(change, name) for name in order) for change in changes]
                # Straight to sqlite3's executemany, which sums the rowcounts; the values are
                # plain str, bytes and int, so SQLAlchemy's per-row processing adds nothing.
                moved = conn.exec_driver_sql(sql, parameters).rowcount
        return moved

    def _claim_statement(self, returning: bool) -> Any:
        cached = self._upserts.get(f"claim_data_keys:{returning}")
        if cached is None:
            table = self._tables["data_keys"]
            cached = self._insert(table).on_conflict_do_nothing(index_elements=["artifact_id"])
            if returning:
                cached = cached.returning(table.c.artifact_id)
            self._upserts[f"claim_data_keys:{returning}"] = cached
        return cached

    def _rewrap_unnest_statement(self) -> Any:
        # PostgreSQL: the batch as five arrays unnested into rows, so one statement (one
        # round trip, one plan) updates them all; rowcount counts the rows that matched.
        cached = self._upserts.get("rewrap_data_keys_unnest")
        if cached is None:
            name = self._engine.dialect.identifier_preparer.format_table(self._tables["data_keys"])
            cached = text(
                f"UPDATE {name} AS d SET kek_id = v.kek_id, wrapped_key = v.wrapped_key, "
                "rewrapped_at_ms = v.rewrapped_at_ms "
                "FROM unnest(CAST(:artifact_ids AS text[]), CAST(:expected_kek_ids AS text[]), "
                "CAST(:kek_ids AS text[]), CAST(:wrapped_keys AS bytea[]), CAST(:rewrapped_at_ms AS bigint[])) "
                "AS v(artifact_id, expected_kek_id, kek_id, wrapped_key, rewrapped_at_ms) "
                "WHERE d.artifact_id = v.artifact_id AND d.kek_id = v.expected_kek_id"
            )
            self._upserts["rewrap_data_keys_unnest"] = cached
        return cached

    def _rewrap_statement(self) -> tuple[str, tuple[str, ...]]:
        # SQLite's compare-and-set UPDATE as SQL text with ``?`` placeholders, and the
        # `Rewrap` field each placeholder takes, in order.
        cached = self._upserts.get("rewrap_data_keys")
        if cached is None:
            table = self._tables["data_keys"]
            statement = (
                update(table)
                .where(
                    table.c.artifact_id == bindparam("artifact_id_"),
                    table.c.kek_id == bindparam("expected_kek_id_"),
                )
                .values(
                    kek_id=bindparam("kek_id_"),
                    wrapped_key=bindparam("wrapped_key_"),
                    rewrapped_at_ms=bindparam("rewrapped_at_ms_"),
                )
            )
            compiled = statement.compile(dialect=self._engine.dialect)
            order = tuple(name.removesuffix("_") for name in compiled.positiontup or ())
            cached = (compiled.string, order)
            self._upserts["rewrap_data_keys"] = cached
        return cached

    def drop_data_keys(self, artifact_ids: Iterable[str]) -> int:
        """Delete the data keys of ``artifact_ids`` in one transaction (``ID_CHUNK`` ids a statement).

        Returns how many rows went. Raises ``RECORD_UNAVAILABLE``.
        """
        return self._delete_by_artifact("drop_data_keys", "data_keys", artifact_ids)

    def count_data_keys(self) -> dict[str, int]:
        """kek_id -> how many data keys it wraps (one ``GROUP BY``); KEKs wrapping none are absent."""
        table = self._tables["data_keys"]
        with self._reading("count_data_keys") as conn:
            rows = conn.execute(select(table.c.kek_id, func.count()).group_by(table.c.kek_id))
            return {kek_id: count for kek_id, count in rows}

    # --- audit trail -------------------------------------------------------------------

    def append_audit_record(self, build: AuditBuilder) -> AuditEventRecord:
        """Append ``build(seq, head_hash)`` at the head of the trail under the trail's lock; returns it.

        One transaction: PostgreSQL takes a transaction-scoped advisory lock keyed by the
        store's schema and prefix (``pg_advisory_xact_lock``, released at commit or
        rollback, so a killed appender blocks no one); SQLite takes the database's write
        lock first (``BEGIN IMMEDIATE``; a deferred transaction would read the head under
        a snapshot another writer can invalidate). Then the head row is read, ``build``
        called, and one plain ``INSERT`` made: never an upsert. Raises as
        `RecordStore.append_audit_record` says.
        """
        table = self._tables["audit_events"]
        with translated_errors(self._url, "append_audit_record"), self._engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(self._lock_key("audit"))))
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            head = conn.execute(
                select(table.c.seq, table.c.event_hash).order_by(table.c.seq.desc()).limit(1)
            ).first()
            seq, prev_hash = (1, None) if head is None else (int(head[0]) + 1, str(head[1]))
            event = check_audit_record(build(seq, prev_hash), seq, prev_hash)
            conn.execute(insert(table).values(**event.model_dump()))
            # Leaving the block without this commit (an exception) rolls the transaction back.
            conn.commit()
        return event

    def audit_records(
        self,
        *,
        after_seq: int = 0,
        since_ms: int | None = None,
        grant_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEventRecord]:
        """Audit events with seq > ``after_seq`` (keyset pages over the primary key), by seq.

        Optionally ``at_ms >= since_ms`` and/or one grant; at most ``limit``. Raises
        ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``.
        """
        check_audit_query(after_seq, limit)
        table = self._tables["audit_events"]
        statement = (
            select(table).where(table.c.seq > after_seq).order_by(*_order_columns(table, "audit_records"))
        )
        if since_ms is not None:
            statement = statement.where(table.c.at_ms >= since_ms)
        if grant_id is not None:
            statement = statement.where(table.c.grant_id == grant_id)
        if limit is not None:
            statement = statement.limit(limit)
        return self._select("audit_records", AuditEventRecord, statement)

    def audit_records_with_hashes(self, event_hashes: Iterable[str]) -> list[AuditEventRecord]:
        """The audit events whose event_hash is one of ``event_hashes``, by seq (``ID_CHUNK`` hashes a query)."""
        table = self._tables["audit_events"]
        wanted = sorted(set(event_hashes))
        found: list[AuditEventRecord] = []
        for start in range(0, len(wanted), ID_CHUNK):
            statement = select(table).where(table.c.event_hash.in_(wanted[start : start + ID_CHUNK]))
            found.extend(self._select("audit_records_with_hashes", AuditEventRecord, statement))
        return sorted(found, key=lambda event: event.seq)

    # --- thread leases -----------------------------------------------------------------

    def acquire_lease(
        self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None
    ) -> ThreadLease:
        """Take the lease of ``thread_id`` if free, expired or ``holder``'s; returns the lease as stored.

        One upsert whose update applies only to an expired lease or the holder's own
        (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``, atomic on SQLite and PostgreSQL),
        then a read in the same transaction. Raises ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
        """
        check_lease_args(thread_id, holder, ttl_ms)
        at = now_ms() if at_ms is None else at_ms
        table = self._tables.leases
        insert = self._insert(table).values(thread_id=thread_id, holder=holder, expires_at_ms=at + ttl_ms)
        statement = insert.on_conflict_do_update(
            index_elements=["thread_id"],
            set_={"holder": insert.excluded.holder, "expires_at_ms": insert.excluded.expires_at_ms},
            where=(table.c.holder == insert.excluded.holder) | (table.c.expires_at_ms <= at),
        )
        with self._writing("acquire_lease") as conn:
            conn.execute(statement)
            row = conn.execute(select(table).where(table.c.thread_id == thread_id)).mappings().one()
        return ThreadLease(
            thread_id=row["thread_id"], holder=row["holder"], expires_at_ms=row["expires_at_ms"]
        )

    def renew_lease(self, thread_id: str, holder: str, ttl_ms: int, *, at_ms: int | None = None) -> bool:
        """Extend ``holder``'s lease to ``at_ms + ttl_ms``; False when it holds it no more."""
        check_lease_args(thread_id, holder, ttl_ms)
        at = now_ms() if at_ms is None else at_ms
        table = self._tables.leases
        with self._writing("renew_lease") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.thread_id == thread_id, table.c.holder == holder)
                .values(expires_at_ms=at + ttl_ms)
            )
        return result.rowcount == 1

    def release_lease(self, thread_id: str, holder: str) -> bool:
        """Drop ``holder``'s lease of ``thread_id``; False when ``holder`` did not hold it."""
        table = self._tables.leases
        with self._writing("release_lease") as conn:
            result = conn.execute(
                delete(table).where(table.c.thread_id == thread_id, table.c.holder == holder)
            )
        return result.rowcount == 1

    # --- identities and grants -----------------------------------------------------------

    def _add_first(self, action: str, table_name: str, model: type[RecordT], record: BaseModel) -> RecordT:
        # INSERT ... ON CONFLICT DO NOTHING, then the stored row: the first writer wins.
        table = self._tables[table_name]
        key = _KEYS[table_name]
        row = record.model_dump()
        statement = self._insert(table).values(**row).on_conflict_do_nothing(index_elements=list(key))
        with self._writing(action) as conn:
            conn.execute(statement)
            stored = (
                conn.execute(select(table).where(*(table.c[col] == row[col] for col in key))).mappings().one()
            )
        return _stored(action, model, dict(stored))

    def prompt_links_for_artifact(self, artifact_id: str) -> list[PromptLinkRecord]:
        """Prompt links naming ``artifact_id`` as rendered prompt or context (two indexed columns), by prompt_link_id."""
        table = self._tables["prompt_links"]
        statement = (
            select(table)
            .where(
                (table.c.rendered_prompt_artifact_id == artifact_id)
                | (table.c.context_artifact_id == artifact_id)
            )
            .order_by(*_order_columns(table, "prompt_links_for_artifact"))
        )
        return self._select("prompt_links_for_artifact", PromptLinkRecord, statement)

    def add_identity(self, record: IdentityRecord) -> IdentityRecord:
        """Insert an identity unless its name is registered; returns the stored one.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        identity = validated(record, IdentityRecord)
        return self._add_first("add_identity", "identities", IdentityRecord, identity)

    def get_identity(self, name: str) -> IdentityRecord | None:
        """The identity ``name``, or None; ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``."""
        table = self._tables["identities"]
        return self._first("get_identity", IdentityRecord, select(table).where(table.c.name == name))

    def list_identities(self) -> list[IdentityRecord]:
        """Every identity, by name."""
        table = self._tables["identities"]
        statement = select(table).order_by(*_order_columns(table, "list_identities"))
        return self._select("list_identities", IdentityRecord, statement)

    def add_activation(self, record: ActivationRecord) -> tuple[ActivationRecord, bool]:
        """Insert an activation unless its activation_id is recorded; the stored one and whether it is new.

        One ``INSERT ... ON CONFLICT DO NOTHING``: of two sensor ticks recording one
        activation at once, exactly one inserts. Raises ``RECORD_INVALID`` (nothing
        written), ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        activation = validated(record, ActivationRecord)
        table = self._tables["activations"]
        row = activation.model_dump()
        statement = self._insert(table).values(**row).on_conflict_do_nothing(index_elements=["activation_id"])
        with self._writing("add_activation") as conn:
            inserted = conn.execute(statement).rowcount == 1
            stored = (
                conn.execute(select(table).where(table.c.activation_id == activation.activation_id))
                .mappings()
                .one()
            )
        return _stored("add_activation", ActivationRecord, dict(stored)), inserted

    def list_activations(self, source_workflow_id: str | None = None) -> list[ActivationRecord]:
        """Recorded activations (of ``source_workflow_id`` when given), by created_at_ms then activation_id."""
        table = self._tables["activations"]
        statement = select(table).order_by(*_order_columns(table, "list_activations"))
        if source_workflow_id is not None:
            statement = statement.where(table.c.source_workflow_id == source_workflow_id)
        return self._select("list_activations", ActivationRecord, statement)

    def add_grant(self, record: GrantRecord) -> GrantRecord:
        """Insert a grant unless its grant_id is recorded; returns the stored one.

        Raises ``RECORD_INVALID`` (nothing written), ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
        """
        grant = validated(record, GrantRecord)
        return self._add_first("add_grant", "grants", GrantRecord, grant)

    def get_grant(self, grant_id: str) -> GrantRecord | None:
        """The grant ``grant_id``, or None; ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY``."""
        table = self._tables["grants"]
        return self._first("get_grant", GrantRecord, select(table).where(table.c.grant_id == grant_id))

    def list_grants(self) -> list[GrantRecord]:
        """Every recorded grant, by issued_at_ms then grant_id."""
        table = self._tables["grants"]
        statement = select(table).order_by(*_order_columns(table, "list_grants"))
        return self._select("list_grants", GrantRecord, statement)

    def revoke_grant(self, grant_id: str, *, at_ms: int | None = None) -> bool:
        """Set ``revoked_at_ms`` of a grant not yet revoked (one conditional UPDATE); False otherwise."""
        at = now_ms() if at_ms is None else at_ms
        table = self._tables["grants"]
        with self._writing("revoke_grant") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.grant_id == grant_id, table.c.revoked_at_ms.is_(None))
                .values(revoked_at_ms=at)
            )
        return result.rowcount == 1

    def use_grant(self, grant_id: str, *, size: int, at_ms: int) -> str:
        """Count one read on the grant with one conditional UPDATE; `GRANT_USE_OK` or the refusal.

        The WHERE clause holds every limit (not revoked, budget, rate window), so the
        database decides atomically: PostgreSQL re-checks it on the locked row after a
        concurrent update commits, SQLite runs one writer at a time. When no row changes,
        a read of the row says which limit refused. Raises ``RECORD_INVALID``,
        ``RECORD_UNAVAILABLE``.
        """
        check_grant_use(grant_id, size, at_ms)
        table = self._tables["grants"]
        c = table.c
        fresh = c.window_start_ms + c.rate_window_ms <= at_ms
        statement = (
            update(table)
            .where(
                c.grant_id == grant_id,
                c.revoked_at_ms.is_(None),
                c.bytes_used + size <= c.max_bytes,
                fresh | (c.window_reads < c.rate_reads),
            )
            .values(
                bytes_used=c.bytes_used + size,
                reads=c.reads + 1,
                window_start_ms=case((fresh, at_ms), else_=c.window_start_ms),
                window_reads=case((fresh, 1), else_=c.window_reads + 1),
            )
        )
        with self._writing("use_grant") as conn:
            if conn.execute(statement).rowcount == 1:
                return GRANT_USE_OK
            row = conn.execute(select(table).where(c.grant_id == grant_id)).mappings().one_or_none()
        grant = None if row is None else _stored("use_grant", GrantRecord, dict(row))
        # A refusal always names a limit: the row read back is at least as used as the one refused.
        return grant_use_refusal(grant, size, at_ms) or GRANT_USE_RATE


def _order_columns(table: Table, listing: str) -> list[Any]:
    return [table.c[name] for name in ORDERS[listing]]


def _stored(action: str, model: type[RecordT], row: dict[str, Any]) -> RecordT:
    """A row read back as ``model``; ``RECORD_INTEGRITY`` if the stored row fails validation."""
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        raise RecordError(
            RECORD_INTEGRITY,
            f"stored {model.__name__} row fails validation during {action}: {field_errors(exc)}",
            action=action,
        ) from exc
