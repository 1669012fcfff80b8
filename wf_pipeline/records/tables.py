"""Tables of the record store, derived from the canonical record models.

Each table mirrors one model of ``wf_pipeline.metadata.records`` column for column, so
a new model field becomes a column without a second definition here. Tuples and dicts
are stored as canonical JSON text, bytes as binary (BLOB, BYTEA); integers, timestamps
(milliseconds) among them, are BIGINT. The database
gets its tables from the migrations (`wf_pipeline.records.migrations`), never from this
module: a change here needs a revision there, and a test compares the two.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from wf_pipeline.metadata.canonical import canonical_json
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
)

NAMING_CONVENTION = {
    "pk": "%(table_name)s_pk",
    "uq": "%(table_name)s_%(column_0_N_name)s_uq",
    "ix": "%(table_name)s_%(column_0_N_name)s_ix",
    "fk": "%(table_name)s_%(column_0_name)s_fk",
}


class UnparsedJson:
    """Stored JSON text that does not parse (a row altered outside the product).

    `JsonText` returns it instead of raising, so that the row fails its record model's
    validation (``RECORD_INTEGRITY``, with the row's position) instead of breaking the
    whole query with a raw ``JSONDecodeError``.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"UnparsedJson({len(self.text)} chars)"


class JsonText(TypeDecorator[Any]):
    """Canonical JSON in a TEXT column: the same value always stores the same bytes."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        """``value`` as canonical JSON text (sorted keys, no spaces), None as NULL."""
        return None if value is None else canonical_json(value).decode("utf-8")

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        """The stored JSON text parsed back (lists for stored tuples), NULL as None; `UnparsedJson` if it does not parse."""
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return UnparsedJson(value)


@dataclass(frozen=True)
class TableSpec:
    """How one record model is stored: its key, lookups and constraints beyond the columns."""

    name: str
    model: type[BaseModel]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    # Rows of a thread's history cannot outlive or precede their thread.
    references_thread: bool = False
    # SQLite keeps the rows in the primary key's B-tree (``WITHOUT ROWID``): one tree per
    # write instead of a rowid table plus a key index, and rows in key order for key-ordered scans.
    clustered: bool = False


TABLE_SPECS: tuple[TableSpec, ...] = (
    TableSpec("nodes", NodeRecord, key=("node_id", "path"), indexes=(("root_id", "path"),)),
    TableSpec("targets", TargetRecord, key=("target_key",)),
    TableSpec("trees", TreeRecord, key=("root_id",)),
    TableSpec("threads", ThreadRecord, key=("thread_id",), indexes=(("workflow_id", "status"),)),
    # One row per (thread, turn, attempt): the deterministic turn_record_id encodes exactly that.
    TableSpec(
        "turns",
        TurnRecord,
        key=("turn_record_id",),
        unique=(("thread_id", "turn_id", "attempt"),),
        # Recorded responses are looked up by their request digest (`wf_pipeline.runtime.requests`).
        indexes=(("request_digest",),),
        references_thread=True,
    ),
    TableSpec(
        "gates", GateRecord, key=("gate_record_id",), indexes=(("thread_id",),), references_thread=True
    ),
    # The two payload columns are indexed for privileged reads, which find an artifact's links.
    TableSpec(
        "prompt_links",
        PromptLinkRecord,
        key=("prompt_link_id",),
        indexes=(("thread_id",), ("rendered_prompt_artifact_id",), ("context_artifact_id",)),
        references_thread=True,
    ),
    TableSpec(
        "artifact_links",
        ArtifactLinkRecord,
        key=("artifact_link_id",),
        indexes=(("thread_id",), ("artifact_id",)),
        references_thread=True,
    ),
    # A frame is its content under a node and frame type; frame_id is derived from those three.
    TableSpec(
        "frames",
        FrameRecord,
        key=("frame_id",),
        indexes=(("node_id", "frame_type", "created_at_ms"),),
        unique=(("node_id", "frame_type", "artifact_id"),),
    ),
    # One tombstone per deleted artifact: an id deleted twice keeps its latest deletion.
    # No thread reference: a tombstone outlives whatever referred to the object.
    TableSpec(
        "tombstones",
        TombstoneRecord,
        key=("artifact_id",),
        indexes=(("workflow_id", "artifact_class"),),
    ),
    # Legal holds on a thread or a workflow (no reference: a hold may outlive its thread).
    TableSpec("holds", HoldRecord, key=("hold_id",)),
    # Annotations of frames: the append-only event log, one row per (frame, key, seq), and
    # its materialized view, one row per (frame, key) holding the current value. Neither
    # references the frames table: an archived thread's frame goes, its annotations' log stays.
    TableSpec(
        "annotation_events",
        AnnotationEventRecord,
        key=("frame_id", "key", "seq"),
        indexes=(("at_ms",),),
        clustered=True,
    ),
    TableSpec("annotations", AnnotationRecord, key=("frame_id", "key"), clustered=True),
    # The keyring: KEKs by lineage, and one wrapped data key per encrypted artifact. No
    # thread reference: a shredded artifact's key row outlives every thread that used it.
    TableSpec(
        "keks",
        KekRecord,
        key=("kek_id",),
        indexes=(("artifact_class", "period_start_ms", "generation"),),
    ),
    # (kek_id, artifact_id) serves the keyset pages of one KEK's keys (`data_keys_under`).
    TableSpec(
        "data_keys",
        DataKeyRecord,
        key=("artifact_id",),
        indexes=(("kek_id", "artifact_id"),),
        clustered=True,
    ),
    # Identities and the grants they issue: no thread reference, both outlive any thread.
    TableSpec("identities", IdentityRecord, key=("name",)),
    TableSpec("grants", GrantRecord, key=("grant_id",)),
    # Chained activations (`wf_pipeline.runtime.activations`): they outlive the threads they
    # were judged on; (source_workflow_id, tree_root_id) serves a tree's activations.
    TableSpec(
        "activations",
        ActivationRecord,
        key=("activation_id",),
        indexes=(("source_workflow_id", "tree_root_id"),),
    ),
    # The audit trail: append-only, keyed by its position. No thread reference and no
    # upsert: retention and compaction never touch it, and the store only inserts.
    # (at_ms) serves --since listings, (grant_id) a grant's events, (event_hash) the
    # verifier's lookup of the event a prev_hash names.
    TableSpec(
        "audit_events",
        AuditEventRecord,
        key=("seq",),
        unique=(("event_id",),),
        indexes=(("at_ms",), ("grant_id",), ("event_hash",)),
    ),
)


def _column_type(annotation: Any) -> tuple[TypeEngine[Any] | type[TypeEngine[Any]], bool]:
    """SQL type for a model field annotation, and whether it admits None."""
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        nullable = len(members) < len(get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"cannot store a union of {members}")
        annotation = members[0]
    origin = get_origin(annotation)
    if annotation is bool:
        return Boolean, nullable
    if annotation is int:
        return BigInteger, nullable
    if annotation is bytes:
        return LargeBinary, nullable
    if annotation is str or origin is Literal:
        return Text, nullable
    if origin in (tuple, dict):
        return JsonText, nullable
    raise TypeError(f"no column type for {annotation!r}")


@dataclass(frozen=True)
class RecordTables:
    """The tables of one store: ``metadata``, ``schema_meta``, the record tables by model name, ``leases``, ``keyring_meta``."""

    metadata: MetaData
    schema_meta: Table
    by_name: dict[str, Table]
    # Thread leases (`wf_pipeline.records.protocol.ThreadLease`): coordination, not records.
    leases: Table
    # Named values of the keyring (e.g. the master-key check), first writer wins.
    keyring_meta: Table

    def __getitem__(self, name: str) -> Table:
        """The table of the record kind ``name`` (``"threads"``, ``"turns"``, ...)."""
        return self.by_name[name]


def build_tables(table_prefix: str, schema: str | None) -> RecordTables:
    """The SQLAlchemy tables of a store whose table names start with ``table_prefix``, in ``schema``.

    Constraint and index names follow `NAMING_CONVENTION`, so they match the migrations'.
    """
    metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    threads_table = f"{table_prefix}threads"
    tables: dict[str, Table] = {}
    for spec in TABLE_SPECS:
        columns = []
        for field_name, field in spec.model.model_fields.items():
            sql_type, nullable = _column_type(field.annotation)
            columns.append(Column(field_name, sql_type, nullable=nullable))
        constraints: list[Any] = [PrimaryKeyConstraint(*spec.key)]
        constraints += [UniqueConstraint(*cols) for cols in spec.unique]
        if spec.references_thread:
            target = f"{schema}.{threads_table}.thread_id" if schema else f"{threads_table}.thread_id"
            constraints.append(ForeignKeyConstraint(["thread_id"], [target]))
        name = f"{table_prefix}{spec.name}"
        options = {"sqlite_with_rowid": False} if spec.clustered else {}
        table = Table(name, metadata, *columns, *constraints, **options)
        for cols in spec.indexes:
            Index(None, *(table.c[col] for col in cols))
        tables[spec.name] = table
    schema_meta = Table(
        f"{table_prefix}schema_meta",
        metadata,
        Column("key", Text, primary_key=True),
        Column("value", Text, nullable=False),
    )
    leases = Table(
        f"{table_prefix}thread_leases",
        metadata,
        Column("thread_id", Text, primary_key=True),
        Column("holder", Text, nullable=False),
        Column("expires_at_ms", BigInteger, nullable=False),
    )
    keyring_meta = Table(
        f"{table_prefix}keyring_meta",
        metadata,
        Column("name", Text, primary_key=True),
        Column("value", LargeBinary, nullable=False),
    )
    return RecordTables(
        metadata=metadata, schema_meta=schema_meta, by_name=tables, leases=leases, keyring_meta=keyring_meta
    )
