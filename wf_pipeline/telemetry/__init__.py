"""Telemetry: one row per frame-metadata write and artifact event, in Parquet, queried with DuckDB.

- `schema`: the columns, their pyarrow schema and pandera models (``TELEMETRY_SCHEMA_INVALID``);
- `store`: `TelemetryStore`, the hive-partitioned Parquet files under an fsspec URL, and compaction;
- `recorder`: `TelemetryRecorder`, the in-memory buffer turns record into, flushed per step;
- `query`: `connect` and `run_query` over the views of ``views.sql`` (``TELEMETRY_QUERY_INVALID``).
"""

from wf_pipeline.telemetry.query import VIEWS, VIEWS_SQL, connect, connect_store, run_query, view_columns
from wf_pipeline.telemetry.recorder import (
    ARTIFACT_DOMAIN,
    DisabledTelemetryRecorder,
    Recorder,
    TelemetryRecorder,
    open_recorder,
)
from wf_pipeline.telemetry.schema import (
    ARROW_SCHEMA,
    ARTIFACT_WRITES,
    COLUMNS,
    METADATA_WRITES,
    OUTCOMES,
    TABLES,
    ArtifactWritesModel,
    MetadataWritesModel,
    TelemetryRowModel,
    validate_batch,
)
from wf_pipeline.telemetry.store import CompactionResult, TelemetryStore

__all__ = [
    "ARROW_SCHEMA",
    "ARTIFACT_DOMAIN",
    "ARTIFACT_WRITES",
    "COLUMNS",
    "METADATA_WRITES",
    "OUTCOMES",
    "TABLES",
    "VIEWS",
    "VIEWS_SQL",
    "ArtifactWritesModel",
    "CompactionResult",
    "DisabledTelemetryRecorder",
    "MetadataWritesModel",
    "Recorder",
    "TelemetryRecorder",
    "TelemetryRowModel",
    "TelemetryStore",
    "connect",
    "connect_store",
    "open_recorder",
    "run_query",
    "validate_batch",
    "view_columns",
]
