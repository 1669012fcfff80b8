"""The durable record store: threads, turns, gates, prompt and artifact links, frames, nodes.

Writes take canonical record models and re-validate them; reads return models. Every
write is an upsert on the record's deterministic id, so replaying a step rewrites the
same rows instead of adding new ones. The records of one turn commit in one
transaction (``commit_turn``): after a failure none of them is visible.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.records import (
    SCHEMA_VERSION,
    ArtifactLinkRecord,
    FrameRecord,
    GateRecord,
    NodeRecord,
    PromptLinkRecord,
    TargetRecord,
    ThreadRecord,
    TurnRecord,
)
from wf_pipeline.records.connection import (
    SQL_NAME_RE,
    create_record_engine,
    driver_message,
    parse_url,
    safe_url,
    translated_errors,
)
from wf_pipeline.records.tables import TABLE_SPECS, RecordTables, build_tables

RecordT = TypeVar("RecordT", bound=BaseModel)

SCHEMA_VERSION_KEY = "schema_version"
_KEYS = {spec.name: spec.key for spec in TABLE_SPECS}
# Concurrent first opens of a fresh database may race on CREATE TABLE; the loser retries
# and then finds the tables in place.
_CREATE_ATTEMPTS = 5


@dataclass(frozen=True)
class TurnCommit:
    """Everything one attempt of one turn writes, committed together."""

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
                    "RECORD_INVALID",
                    f"{name} record does not belong to turn {turn.turn_id} attempt {turn.attempt} "
                    f"of thread {self.thread.thread_id}",
                    thread_id=self.thread.thread_id,
                    record=name,
                )


def _validated(record: Any, model: type[RecordT]) -> RecordT:
    """Re-validate ``record`` as ``model``: models built with model_construct skip checks."""
    if not isinstance(record, model):
        raise RecordError("RECORD_INVALID", f"expected a {model.__name__}, got {type(record).__name__}")
    try:
        return model.model_validate(record.model_dump())
    except ValidationError as exc:
        raise RecordError(
            "RECORD_INVALID", f"{model.__name__} fails validation: {_field_errors(exc)}", model=model.__name__
        ) from exc


def _field_errors(exc: ValidationError) -> str:
    # Field locations and error types only: input values may hold payload text.
    return ", ".join(f"{'.'.join(map(str, err['loc']))}:{err['type']}" for err in exc.errors())


class RecordStore:
    """Record store over SQLAlchemy Core; ``url`` is ``sqlite:///<file>`` or ``postgresql://...``."""

    def __init__(self, url: str, *, schema: str | None = None, table_prefix: str = "wf_") -> None:
        self._url = parse_url(url)
        self.backend = self._url.get_backend_name()
        if not SQL_NAME_RE.fullmatch(table_prefix) and table_prefix != "":
            raise RecordError("RECORD_BAD_OPTION", "table_prefix must match " + SQL_NAME_RE.pattern)
        if schema is not None:
            if self.backend != "postgresql":
                raise RecordError("RECORD_BAD_OPTION", "a schema is only supported on PostgreSQL")
            if not SQL_NAME_RE.fullmatch(schema):
                raise RecordError("RECORD_BAD_OPTION", "schema must match " + SQL_NAME_RE.pattern)
        self.schema = schema
        self.table_prefix = table_prefix
        self._tables: RecordTables = build_tables(table_prefix, schema)
        self._upserts: dict[str, Any] = {}
        self._engine: Engine = create_record_engine(self._url)
        try:
            self._create_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The store's URL with any password masked."""
        return safe_url(self._url)

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        schema_meta = self._tables.schema_meta
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    if self.schema is not None:
                        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    self._tables.metadata.create_all(conn)
                    conn.execute(
                        self._insert(schema_meta)
                        .values(key=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION))
                        .on_conflict_do_nothing(index_elements=["key"])
                    )
                    stored = conn.execute(
                        select(schema_meta.c.value).where(schema_meta.c.key == SCHEMA_VERSION_KEY)
                    ).scalar_one()
                break
            except DBAPIError as exc:
                if attempt == _CREATE_ATTEMPTS or not _lost_creation_race(exc):
                    raise RecordError(
                        "RECORD_UNAVAILABLE",
                        f"cannot open record store {self.url}: {driver_message(exc, self._url)}",
                        url=self.url,
                    ) from exc
                time.sleep(0.05 * attempt)
        if stored != str(SCHEMA_VERSION):
            raise RecordError(
                "RECORD_SCHEMA_MISMATCH",
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
            rows = conn.execute(statement).mappings().all()
        try:
            return [model.model_validate(dict(row)) for row in rows]
        except ValidationError as exc:
            raise RecordError(
                "RECORD_INTEGRITY",
                f"stored {model.__name__} row fails validation during {action}: {_field_errors(exc)}",
                action=action,
            ) from exc

    def _first(self, action: str, model: type[RecordT], statement: Any) -> RecordT | None:
        found = self._select(action, model, statement.limit(1))
        return found[0] if found else None

    # --- nodes -----------------------------------------------------------------------

    def upsert_nodes(self, records: Iterable[NodeRecord]) -> int:
        """Upsert nodes keyed by (node_id, path); returns how many distinct nodes were written."""
        nodes = [_validated(record, NodeRecord) for record in records]
        with self._writing("upsert_nodes") as conn:
            self._upsert(conn, "nodes", nodes)
        return len({(node.node_id, node.path) for node in nodes})

    def nodes_for_root(self, root_id: str) -> list[NodeRecord]:
        table = self._tables["nodes"]
        statement = select(table).where(table.c.root_id == root_id).order_by(table.c.path, table.c.node_id)
        return self._select("nodes_for_root", NodeRecord, statement)

    # --- targets ---------------------------------------------------------------------

    def save_targets(self, records: Iterable[TargetRecord]) -> None:
        """Upsert targets keyed by target_key: the latest registration of a key wins."""
        targets = [_validated(record, TargetRecord) for record in records]
        with self._writing("save_targets") as conn:
            self._upsert(conn, "targets", targets)

    def get_target(self, target_key: str) -> TargetRecord | None:
        table = self._tables["targets"]
        return self._first("get_target", TargetRecord, select(table).where(table.c.target_key == target_key))

    def list_targets(self) -> list[TargetRecord]:
        table = self._tables["targets"]
        return self._select("list_targets", TargetRecord, select(table).order_by(table.c.target_key))

    # --- threads ---------------------------------------------------------------------

    def save_thread(self, record: ThreadRecord) -> None:
        thread = _validated(record, ThreadRecord)
        with self._writing("save_thread") as conn:
            self._upsert(conn, "threads", [thread])

    def get_thread(self, thread_id: str) -> ThreadRecord | None:
        table = self._tables["threads"]
        return self._first("get_thread", ThreadRecord, select(table).where(table.c.thread_id == thread_id))

    def list_threads(self, workflow_id: str | None = None, status: str | None = None) -> list[ThreadRecord]:
        table = self._tables["threads"]
        statement = select(table).order_by(table.c.target_path, table.c.thread_id)
        if workflow_id is not None:
            statement = statement.where(table.c.workflow_id == workflow_id)
        if status is not None:
            statement = statement.where(table.c.status == status)
        return self._select("list_threads", ThreadRecord, statement)

    # --- one turn, one transaction ---------------------------------------------------

    def commit_turn(self, commit: TurnCommit) -> None:
        """Upsert the thread and every record of one turn attempt in one transaction."""
        if not isinstance(commit, TurnCommit):
            raise RecordError("RECORD_INVALID", f"expected a TurnCommit, got {type(commit).__name__}")
        thread = _validated(commit.thread, ThreadRecord)
        turn = _validated(commit.turn, TurnRecord)
        gate = None if commit.gate is None else _validated(commit.gate, GateRecord)
        prompt_link = None if commit.prompt_link is None else _validated(commit.prompt_link, PromptLinkRecord)
        artifact_links = [_validated(link, ArtifactLinkRecord) for link in commit.artifact_links]
        frame = None if commit.frame is None else _validated(commit.frame, FrameRecord)
        # Parents first: the thread row is what the other rows reference.
        with self._writing("commit_turn") as conn:
            self._upsert(conn, "threads", [thread])
            self._upsert(conn, "turns", [turn])
            self._upsert(conn, "gates", [gate] if gate else [])
            self._upsert(conn, "prompt_links", [prompt_link] if prompt_link else [])
            self._upsert(conn, "artifact_links", artifact_links)
            self._upsert(conn, "frames", [frame] if frame else [])

    def turns_for_thread(self, thread_id: str) -> list[TurnRecord]:
        table = self._tables["turns"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(table.c.turn_seq, table.c.attempt, table.c.turn_id)
        )
        return self._select("turns_for_thread", TurnRecord, statement)

    def latest_turns(self, thread_id: str) -> dict[str, TurnRecord]:
        """turn_id -> the record of its highest attempt, in turn_seq order."""
        # Rows come in attempt order, so the last one seen per turn_id is its latest.
        latest = {turn.turn_id: turn for turn in self.turns_for_thread(thread_id)}
        return dict(sorted(latest.items(), key=lambda item: (item[1].turn_seq, item[0])))

    def gates_for_thread(self, thread_id: str) -> list[GateRecord]:
        table = self._tables["gates"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(table.c.evaluated_at_ms, table.c.attempt, table.c.gate_record_id)
        )
        return self._select("gates_for_thread", GateRecord, statement)

    def prompt_links_for_thread(self, thread_id: str) -> list[PromptLinkRecord]:
        table = self._tables["prompt_links"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(table.c.created_at_ms, table.c.prompt_link_id)
        )
        return self._select("prompt_links_for_thread", PromptLinkRecord, statement)

    def artifact_links_for_thread(self, thread_id: str) -> list[ArtifactLinkRecord]:
        table = self._tables["artifact_links"]
        statement = (
            select(table)
            .where(table.c.thread_id == thread_id)
            .order_by(table.c.created_at_ms, table.c.attempt, table.c.artifact_link_id)
        )
        return self._select("artifact_links_for_thread", ArtifactLinkRecord, statement)

    # --- frames ----------------------------------------------------------------------

    def save_frame(self, record: FrameRecord) -> None:
        frame = _validated(record, FrameRecord)
        with self._writing("save_frame") as conn:
            self._upsert(conn, "frames", [frame])

    def head_frame(self, node_id: str, frame_type: str) -> FrameRecord | None:
        """The latest frame of ``frame_type`` on ``node_id``: newest created_at_ms, then highest frame_id."""
        table = self._tables["frames"]
        statement = (
            select(table)
            .where(table.c.node_id == node_id, table.c.frame_type == frame_type)
            .order_by(table.c.created_at_ms.desc(), table.c.frame_id.desc())
        )
        return self._first("head_frame", FrameRecord, statement)

    def frame_artifact_ids(self, frame_type: str) -> set[str]:
        """Artifact ids of every frame of ``frame_type`` (the outputs a workflow has produced)."""
        table = self._tables["frames"]
        with self._reading("frame_artifact_ids") as conn:
            rows = conn.execute(
                select(table.c.artifact_id).where(table.c.frame_type == frame_type).distinct()
            )
            return {row[0] for row in rows}

    # --- orphan detection ------------------------------------------------------------

    def referenced_artifact_ids(self) -> set[str]:
        """Every artifact id any record refers to; CAS objects outside this set are orphans."""
        tables = self._tables
        single_columns = [
            tables["turns"].c.output_artifact_id,
            tables["artifact_links"].c.artifact_id,
            tables["frames"].c.artifact_id,
            tables["nodes"].c.content_digest,
            *(
                tables["prompt_links"].c[name]
                for name in (
                    "system_prompt_artifact_id",
                    "user_prompt_template_artifact_id",
                    "rendered_prompt_artifact_id",
                    "context_artifact_id",
                )
            ),
        ]
        found: set[str] = set()
        with self._reading("referenced_artifact_ids") as conn:
            for column in single_columns:
                found.update(conn.execute(select(column).where(column.is_not(None)).distinct()).scalars())
            for inputs in conn.execute(select(tables["turns"].c.input_artifact_ids)).scalars():
                found.update(inputs or ())
        return found


def open_record_store(url: str, *, schema: str | None = None, table_prefix: str = "wf_") -> RecordStore:
    return RecordStore(url, schema=schema, table_prefix=table_prefix)


def _lost_creation_race(exc: DBAPIError) -> bool:
    # Two first opens both found a table missing and both created it; the loser sees a
    # duplicate (SQLite, PostgreSQL) or a unique violation in the catalog (PostgreSQL).
    return isinstance(exc, IntegrityError) or "already exists" in str(exc.orig).lower()
