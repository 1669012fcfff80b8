"""The columns of the telemetry tables: one pyarrow schema and the pandera models that check it.

Two tables share the same columns (issue 9, item 1): ``metadata_writes`` (one row per key a
frame-metadata write carried, or the key a rejected write failed on) and ``artifact_writes``
(one row per artifact put, delete or expiry; ``key`` is the artifact class, ``domain`` is
``cas``). A row holds ids, sizes and codes only, never a value or a payload.

Columns (``*`` may be null where the writer does not know it):

- ``ts_ms`` int64: milliseconds since the Unix epoch (UTC) of the write;
- ``workflow_id``, ``profile_version``*, ``thread_id``*, ``turn_id``*, ``node_id``*,
  ``frame_id``*: where the write happened;
- ``domain``, ``key``: the key's owner domain and name (or ``cas`` and the artifact class);
- ``mutability_class``*: the key's mutability class (``identity``, ``attested``...);
- ``bytes`` int64: the value's (artifact's) size in bytes, UTF-8 for metadata values;
- ``budget_bytes`` int64*: the budget that size is held against;
- ``outcome``: ``accepted``, ``rejected``, ``deleted`` or ``expired``;
- ``error_code``*: the catalogue code of a rejection;
- ``run_id``*: the Dagster run the write belongs to;
- ``branch``*: for a turn that declares ``when:``, the branch its decision took
  (`BRANCHES`: ``taken`` on every row of an attempt that ran, ``not_taken`` on the
  decision row of a skip), null for an unconditional turn and for rows written before the
  column existed (readers fill it: `wf_pipeline.telemetry.store.TelemetryStore.read_file`,
  the views read with ``union_by_name``). A decision is one ``metadata_writes`` row of
  domain ``branch``, key ``turns.branch``, whose ``bytes`` is the recorded decision's
  canonical JSON size (`wf_pipeline.runtime.measure.record_branch_decision`).

A third table, ``key_events``, has columns of its own (`KEY_EVENT_COLUMNS`): one row per
key lifecycle event (a KEK made, a rotation, a rewrap, a retirement, a destruction), with
ids, states, counts and times, never key material, data keys or wrapped keys.

A fourth, ``audit_events`` (`AUDIT_EVENT_COLUMNS`), is the Parquet copy of the audit trail
of privileged reads (`wf_pipeline.security.audit`): one row per event, exported from the
record store in seq order, with ids, digests, codes and counts, never a payload.

Every flush checks its batch with the table's pandera `DataFrameModel` (`validate_batch`)
before anything is written; the frame is viewed over the Arrow buffers
(``pandas.ArrowDtype``), so checking costs no copy of the rows.
"""

from __future__ import annotations

from typing import Final

import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.errors import SchemaError, SchemaErrors
from pandera.typing import Series

from wf_pipeline.errors import TELEMETRY_SCHEMA_INVALID, TelemetryError

__all__ = [
    "ARROW_SCHEMA",
    "ARTIFACT_WRITES",
    "AUDIT_EVENTS",
    "AUDIT_EVENTS_SCHEMA",
    "AUDIT_EVENT_COLUMNS",
    "AuditEventsModel",
    "BRANCHES",
    "COLUMNS",
    "KEY_EVENTS",
    "KEY_EVENTS_SCHEMA",
    "KEY_EVENT_COLUMNS",
    "KEY_EVENT_KINDS",
    "KEY_EVENT_OUTCOMES",
    "KeyEventsModel",
    "METADATA_WRITES",
    "OUTCOMES",
    "TABLES",
    "ArtifactWritesModel",
    "MetadataWritesModel",
    "TelemetryRowModel",
    "empty_table",
    "model_for",
    "schema_for",
    "validate_batch",
]

METADATA_WRITES: Final = "metadata_writes"
ARTIFACT_WRITES: Final = "artifact_writes"
KEY_EVENTS: Final = "key_events"
AUDIT_EVENTS: Final = "audit_events"
#: The telemetry tables, in the order the views and the store list them.
TABLES: Final[tuple[str, ...]] = (METADATA_WRITES, ARTIFACT_WRITES, KEY_EVENTS, AUDIT_EVENTS)
#: What became of a write.
OUTCOMES: Final[tuple[str, ...]] = ("accepted", "rejected", "deleted", "expired")
#: The values of the ``branch`` column (null: the turn declares no ``when:``).
BRANCHES: Final[tuple[str, ...]] = ("taken", "not_taken")

_STRING = pyarrow.string()
_INT64 = pyarrow.int64()

#: Column name -> (Arrow type, nullable), in file order.
COLUMNS: Final[dict[str, tuple[pyarrow.DataType, bool]]] = {
    "ts_ms": (_INT64, False),
    "workflow_id": (_STRING, False),
    "profile_version": (_STRING, True),
    "thread_id": (_STRING, True),
    "turn_id": (_STRING, True),
    "node_id": (_STRING, True),
    "frame_id": (_STRING, True),
    "domain": (_STRING, False),
    "key": (_STRING, False),
    "mutability_class": (_STRING, True),
    "bytes": (_INT64, False),
    "budget_bytes": (_INT64, True),
    "outcome": (_STRING, False),
    "error_code": (_STRING, True),
    "run_id": (_STRING, True),
    # Last, so a file written before the column existed holds a prefix of the columns.
    "branch": (_STRING, True),
}

#: The Parquet schema of both tables.
ARROW_SCHEMA: Final = pyarrow.schema(
    [pyarrow.field(name, kind, nullable=nullable) for name, (kind, nullable) in COLUMNS.items()]
)

#: The kinds of key lifecycle event a ``key_events`` row records.
KEY_EVENT_KINDS: Final[tuple[str, ...]] = ("create", "rotate", "rewrap", "retire", "destroy")
#: What became of a key lifecycle event: done, or refused / failed (then ``error_code`` says why).
KEY_EVENT_OUTCOMES: Final[tuple[str, ...]] = ("ok", "failed")

_TIMESTAMP = pyarrow.timestamp("ms", tz="UTC")
_DATE = pyarrow.date32()

#: Columns of ``key_events``: name -> (Arrow type, nullable), in file order.
#:
#: - ``event_at`` timestamp (ms, UTC): when the event happened; its UTC day is the
#:   ``date=`` partition (the view's ``date`` column);
#: - ``event``: one of `KEY_EVENT_KINDS` (also the second partition level);
#: - ``kek_id``*, ``artifact_class``*, ``period_start``* (the lineage's first UTC day),
#:   ``manager``*: the KEK the event is about (None for a rewrap, which spans lineages);
#: - ``state``*: the KEK's state after the event;
#: - ``data_keys`` int64*: data keys affected (moved by a rewrap, shredded by a destroy);
#: - ``elapsed_ms`` int64*: wall time of the event in ms;
#: - ``outcome``: one of `KEY_EVENT_OUTCOMES`; ``error_code``*: the catalogue code of a failure.
KEY_EVENT_COLUMNS: Final[dict[str, tuple[pyarrow.DataType, bool]]] = {
    "event_at": (_TIMESTAMP, False),
    "event": (_STRING, False),
    "kek_id": (_STRING, True),
    "artifact_class": (_STRING, True),
    "period_start": (_DATE, True),
    "manager": (_STRING, True),
    "state": (_STRING, True),
    "data_keys": (_INT64, True),
    "elapsed_ms": (_INT64, True),
    "outcome": (_STRING, False),
    "error_code": (_STRING, True),
}

#: The Parquet schema of ``key_events``.
KEY_EVENTS_SCHEMA: Final = pyarrow.schema(
    [pyarrow.field(name, kind, nullable=nullable) for name, (kind, nullable) in KEY_EVENT_COLUMNS.items()]
)

#: Columns of ``audit_events``: name -> (Arrow type, nullable), in file order. The fields of
#: `wf_pipeline.metadata.records.AuditEventRecord`, with:
#:
#: - ``event_at`` timestamp (ms, UTC): the event's ``at_ms``; its UTC day is the ``date=``
#:   partition, its ``outcome`` (``allow`` or ``deny``) the second level;
#: - ``scope`` and ``artifact_ids``: canonical JSON text (an object, a list of ids), as the
#:   record store keeps them (DuckDB reads them with its JSON functions).
AUDIT_EVENT_COLUMNS: Final[dict[str, tuple[pyarrow.DataType, bool]]] = {
    "event_at": (_TIMESTAMP, False),
    "seq": (_INT64, False),
    "event_id": (_STRING, False),
    "requester": (_STRING, False),
    "grant_id": (_STRING, True),
    "reason_code": (_STRING, True),
    "scope": (_STRING, False),
    "artifact_ids": (_STRING, False),
    "outcome": (_STRING, False),
    "code": (_STRING, True),
    "bytes": (_INT64, False),
    "policy_version": (_STRING, False),
    "prev_hash": (_STRING, False),
    "event_hash": (_STRING, False),
}

#: The Parquet schema of ``audit_events``.
AUDIT_EVENTS_SCHEMA: Final = pyarrow.schema(
    [pyarrow.field(name, kind, nullable=nullable) for name, (kind, nullable) in AUDIT_EVENT_COLUMNS.items()]
)

_STR = pd.ArrowDtype(_STRING)
_I64 = pd.ArrowDtype(_INT64)
_TS = pd.ArrowDtype(_TIMESTAMP)
_D32 = pd.ArrowDtype(_DATE)


class TelemetryRowModel(pa.DataFrameModel):
    """The columns every telemetry table has (see the module docstring); strict and ordered."""

    ts_ms: Series[_I64] = pa.Field(ge=0)  # type: ignore[valid-type]
    workflow_id: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    profile_version: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    thread_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    turn_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    node_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    frame_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    domain: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    key: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    mutability_class: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    bytes: Series[_I64] = pa.Field(ge=0)  # type: ignore[valid-type]
    budget_bytes: Series[_I64] = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    outcome: Series[_STR] = pa.Field(isin=list(OUTCOMES))  # type: ignore[valid-type]
    error_code: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    run_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    branch: Series[_STR] = pa.Field(nullable=True, isin=list(BRANCHES))  # type: ignore[valid-type]

    class Config:
        """pandera options: exactly these columns, in this order, with their types as given (no coercion)."""

        strict = True
        ordered = True
        coerce = False


class MetadataWritesModel(TelemetryRowModel):
    """Rows of ``metadata_writes``: one per frame-metadata key written or rejected."""


class ArtifactWritesModel(TelemetryRowModel):
    """Rows of ``artifact_writes``: one per artifact put, delete or expiry (key = artifact class)."""


class KeyEventsModel(pa.DataFrameModel):
    """Rows of ``key_events``: one per key lifecycle event (`KEY_EVENT_COLUMNS`); strict and ordered."""

    event_at: Series[_TS]  # type: ignore[valid-type]
    event: Series[_STR] = pa.Field(isin=list(KEY_EVENT_KINDS))  # type: ignore[valid-type]
    kek_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    artifact_class: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    period_start: Series[_D32] = pa.Field(nullable=True)  # type: ignore[valid-type]
    manager: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    state: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    data_keys: Series[_I64] = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    elapsed_ms: Series[_I64] = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    outcome: Series[_STR] = pa.Field(isin=list(KEY_EVENT_OUTCOMES))  # type: ignore[valid-type]
    error_code: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]

    class Config:
        """pandera options: exactly these columns, in this order, with their types as given (no coercion)."""

        strict = True
        ordered = True
        coerce = False


class AuditEventsModel(pa.DataFrameModel):
    """Rows of ``audit_events``: one per audit event (`AUDIT_EVENT_COLUMNS`); strict and ordered."""

    event_at: Series[_TS]  # type: ignore[valid-type]
    seq: Series[_I64] = pa.Field(ge=1)  # type: ignore[valid-type]
    event_id: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    requester: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    grant_id: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    reason_code: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    scope: Series[_STR]  # type: ignore[valid-type]
    artifact_ids: Series[_STR]  # type: ignore[valid-type]
    outcome: Series[_STR] = pa.Field(isin=["allow", "deny"])  # type: ignore[valid-type]
    code: Series[_STR] = pa.Field(nullable=True)  # type: ignore[valid-type]
    bytes: Series[_I64] = pa.Field(ge=0)  # type: ignore[valid-type]
    policy_version: Series[_STR] = pa.Field(str_length={"min_value": 1})  # type: ignore[valid-type]
    prev_hash: Series[_STR]  # type: ignore[valid-type]
    event_hash: Series[_STR]  # type: ignore[valid-type]

    class Config:
        """pandera options: exactly these columns, in this order, with their types as given (no coercion)."""

        strict = True
        ordered = True
        coerce = False


_MODELS: Final[dict[str, type[pa.DataFrameModel]]] = {
    METADATA_WRITES: MetadataWritesModel,
    ARTIFACT_WRITES: ArtifactWritesModel,
    KEY_EVENTS: KeyEventsModel,
    AUDIT_EVENTS: AuditEventsModel,
}

_SCHEMAS: Final[dict[str, pyarrow.Schema]] = {
    KEY_EVENTS: KEY_EVENTS_SCHEMA,
    AUDIT_EVENTS: AUDIT_EVENTS_SCHEMA,
}


def schema_for(table: str) -> pyarrow.Schema:
    """The Parquet schema of ``table``: `KEY_EVENTS_SCHEMA`, `AUDIT_EVENTS_SCHEMA` or `ARROW_SCHEMA`; ``TELEMETRY_SCHEMA_INVALID`` for an unknown table."""
    model_for(table)
    return _SCHEMAS.get(table, ARROW_SCHEMA)


def model_for(table: str) -> type[pa.DataFrameModel]:
    """The pandera model of ``table``; ``TELEMETRY_SCHEMA_INVALID`` for a table that does not exist."""
    try:
        return _MODELS[table]
    except KeyError:
        raise TelemetryError(
            TELEMETRY_SCHEMA_INVALID,
            f"no telemetry table {table!r} (tables: {', '.join(TABLES)})",
            table=str(table),
        ) from None


def empty_table(table: str = METADATA_WRITES) -> pyarrow.Table:
    """A zero-row table with ``table``'s schema (`schema_for`; default `ARROW_SCHEMA`)."""
    return schema_for(table).empty_table()


def validate_batch(table: str, batch: pyarrow.Table) -> pyarrow.Table:
    """Check a batch of rows against ``table``'s schema and pandera model before it is written.

    Args:
        table: one of `TABLES`.
        batch: the rows; its columns must be exactly the table's (`COLUMNS`,
            `KEY_EVENT_COLUMNS` for ``key_events``, `AUDIT_EVENT_COLUMNS` for
            ``audit_events``), in order, with their Arrow types (a
            nullable column may be all null).

    Returns:
        ``batch`` cast to the table's schema (`schema_for`; same buffers; only field
        nullability differs).

    Raises:
        TelemetryError: ``TELEMETRY_SCHEMA_INVALID`` naming the table, the failing column
            and check, and how many rows failed; never a value.
    """
    model = model_for(table)
    schema = schema_for(table)
    if batch.schema.names != schema.names or batch.schema.types != schema.types:
        got = ", ".join(f"{field.name}:{field.type}" for field in batch.schema)
        raise TelemetryError(
            TELEMETRY_SCHEMA_INVALID,
            f"{table} batch of {batch.num_rows} rows has columns ({got}), not the table's "
            f"{len(schema)} columns in order",
            table=table,
        )
    frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0] if len(cases) else None
        column = str(first["column"]) if first is not None else "?"
        check = str(first["check"]) if first is not None else "?"
        raise TelemetryError(
            TELEMETRY_SCHEMA_INVALID,
            f"{table} batch of {batch.num_rows} rows fails {len(cases)} check(s), "
            f"first: column {column} check {check}",
            table=table,
            column=column,
            check=check,
            failures=len(cases),
        ) from None
    except SchemaError as exc:  # pragma: no cover - lazy=True reports SchemaErrors
        raise TelemetryError(TELEMETRY_SCHEMA_INVALID, f"{table} batch fails a check", table=table) from exc
    return batch.cast(schema)
