"""The row schema of the record archive: archived thread records as Parquet columns.

Compaction (`wf_pipeline.retention.archive`) writes these rows; the telemetry views read
them (``archived_threads``, `wf_pipeline.telemetry.query`). The schema is defined here
once so that writer and reader cannot drift: each archived table has its record model's
fields, mapped as the record store maps them to SQL columns (`wf_pipeline.records.tables`:
ints as int64, text and literals as strings, tuples and dicts as canonical JSON text), plus
``archived_at_ms`` (epoch ms) and ``compaction_id``.
"""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    FrameRecord,
    GateRecord,
    PromptLinkRecord,
    ThreadRecord,
    TurnRecord,
)

__all__ = [
    "ARCHIVE_MODELS",
    "ARCHIVE_SEED_NAME",
    "MARKER_TABLE",
    "archive_row",
    "archive_schema",
    "record_of_row",
]

# Archived tables and their record models, in write order: ``threads`` last, as its file
# marks a compaction run's archive complete.
ARCHIVE_MODELS: dict[str, type[BaseModel]] = {
    "turns": TurnRecord,
    "gates": GateRecord,
    "prompt_links": PromptLinkRecord,
    "artifact_links": ArtifactLinkRecord,
    "frames": FrameRecord,
    "threads": ThreadRecord,
}
MARKER_TABLE = "threads"
# A zero-row file of the threads schema, so a view over the archive resolves before any
# compaction; its leading underscore keeps it out of the archive's own listings.
ARCHIVE_SEED_NAME = "_seed.parquet"
_EXTRA_COLUMNS = (("archived_at_ms", pa.int64()), ("compaction_id", pa.string()))


def _arrow_type(annotation: Any) -> pa.DataType:
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    origin = get_origin(annotation)
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is str or origin is Literal or origin in (tuple, dict):
        return pa.string()
    raise TypeError(f"no archive column type for {annotation!r}")


def archive_schema(table: str) -> pa.Schema:
    """The Arrow schema of archived ``table`` (a key of `ARCHIVE_MODELS`).

    Returns:
        The model's fields in model order, then ``archived_at_ms`` (int64, epoch ms) and
        ``compaction_id`` (string).

    Raises:
        KeyError: ``table`` is not archived (a programming error).
    """
    model = ARCHIVE_MODELS[table]
    fields = [pa.field(name, _arrow_type(info.annotation)) for name, info in model.model_fields.items()]
    return pa.schema([*fields, *(pa.field(name, kind) for name, kind in _EXTRA_COLUMNS)])


def archive_row(record: BaseModel, *, archived_at_ms: int, compaction_id: str) -> dict[str, Any]:
    """One record as an archive row: its fields (tuples and dicts as canonical JSON text) and the two stamps."""
    row = record.model_dump()
    for name, value in row.items():
        if isinstance(value, tuple | list | dict):
            row[name] = canonical_json(value).decode("utf-8")
    row["archived_at_ms"] = archived_at_ms
    row["compaction_id"] = compaction_id
    return row


def record_of_row(table: str, row: dict[str, Any]) -> BaseModel:
    """The record an archive row was made from (`archive_row` undone): JSON text columns parsed, stamps dropped.

    Args:
        table: the archived table (a key of `ARCHIVE_MODELS`).
        row: one row as read from its Parquet file (column -> value).

    Returns:
        The table's record model, validated.

    Raises:
        KeyError: ``table`` is not archived. pydantic.ValidationError: a row the model
            rejects (the record store reports such rows as ``RECORD_INVALID``).
    """
    model = ARCHIVE_MODELS[table]
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in row:
            continue
        value = row[name]
        annotation = info.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        if isinstance(value, str) and get_origin(annotation) in (tuple, dict):
            value = json.loads(value)
        fields[name] = value
    return model.model_validate(fields)
