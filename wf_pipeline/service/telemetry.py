"""Use cases over the telemetry store: ad-hoc queries, the views, synthetic workloads, compaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

from wf_pipeline.errors import CONFIG_STORE_NOT_SHARED, masked_url
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import METADATA_WRITES, TelemetryStore
from wf_pipeline.telemetry.encode import json_value
from wf_pipeline.telemetry.query import connect, open_query, view_columns
from wf_pipeline.telemetry.store import per_process_url
from wf_pipeline.telemetry.synth import synthetic_batches, synthetic_days_problem

__all__ = [
    "compact_telemetry",
    "query_telemetry",
    "settings_warnings",
    "stream_query",
    "synth_telemetry",
    "synthetic_days_problem",
    "telemetry_views",
]

Progress = Callable[[int, int], None]


def settings_warnings(settings: Settings) -> list[dict[str, str]]:
    """Warnings about ``settings`` that every command should show before it works.

    Returns:
        ``[{"code", "message"}]``: ``CONFIG_STORE_NOT_SHARED`` when ``telemetry_url`` lives
        in this process's memory (`per_process_url`): the rows this command writes are gone
        when it exits, and no other ``wf`` command will see them. Empty otherwise.
    """
    if not per_process_url(settings.telemetry_url):
        return []
    return [
        {
            "code": CONFIG_STORE_NOT_SHARED,
            "message": f"the telemetry store (WF_TELEMETRY_URL={masked_url(settings.telemetry_url)}) "
            "lives in this process's memory: its rows are lost when the command exits and no other "
            "command sees them; use a directory or a shared fsspec URL",
        }
    ]


def query_telemetry(settings: Settings, sql: str, *, limit: int | None = None) -> dict[str, Any]:
    """Run ``sql`` over the telemetry views (`wf_pipeline.telemetry.query.open_query`), rows JSON-encoded.

    Args:
        settings: where the telemetry and the archive are.
        sql: one read-only SELECT statement.
        limit: keep at most this many rows (the rest are counted, not held); None keeps all.

    Returns:
        ``{"columns": [names], "rows": [[values]] (each value `json_value`-encoded: valid
        JSON, blobs as base64, intervals as ISO 8601 durations), "row_count" (all rows),
        "omitted_rows" (rows past ``limit``)}``.

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <reason>``.
    """
    kept: list[list[Any]] = []
    total = 0
    with open_query(settings, sql) as (columns, rows):
        for row in rows:
            total += 1
            if limit is None or len(kept) < limit:
                kept.append([json_value(value) for value in row])
    return {"columns": columns, "rows": kept, "row_count": total, "omitted_rows": total - len(kept)}


@contextlib.contextmanager
def stream_query(settings: Settings, sql: str) -> Iterator[tuple[list[str], Iterator[list[Any]]]]:
    """Run ``sql`` like `query_telemetry`, but give its rows one at a time (for ``--json``/``--csv``).

    Returns:
        A context manager giving (column names, an iterator of rows, each a list of
        `json_value`-encoded values); memory stays near one fetch batch whatever the result size.

    Raises:
        TelemetryError: ``TELEMETRY_QUERY_INVALID: <reason>`` (on entering, or while iterating).
    """
    with open_query(settings, sql) as (columns, rows):
        yield columns, ([json_value(value) for value in row] for row in rows)


def telemetry_views(settings: Settings) -> dict[str, Any]:
    """The views over ``settings``' telemetry store and their columns, from DuckDB's catalog.

    Returns:
        ``{"telemetry_url" (password masked), "views": [{"name", "columns": [{"name", "type"}]}]}``
        in name order.
    """
    con = connect(settings)
    try:
        views = view_columns(con)
    finally:
        con.close()
    return {
        "telemetry_url": masked_url(settings.telemetry_url),
        "views": [
            {"name": name, "columns": [{"name": column, "type": kind} for column, kind in columns]}
            for name, columns in sorted(views.items())
        ],
    }


def synth_telemetry(
    settings: Settings,
    rows: int,
    days: int,
    *,
    workflow: str | None = None,
    end_day: dt.date | None = None,
    seed: int = 7,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``rows`` synthetic ``metadata_writes`` rows over ``days`` days through the product's writer.

    The rows come from `wf_pipeline.telemetry.synth.synthetic_batches` and go through
    `TelemetryStore.write` (validated, one file per day and workflow partition and chunk).

    Args:
        settings: ``telemetry_url`` says where.
        rows, days: how many rows, over how many UTC days ending ``end_day`` (default today).
        workflow: one workflow id for every row (default: three).
        seed: the random seed.
        on_progress: called with (rows written, rows in all) after each chunk.

    Returns:
        ``{"rows", "days", "workflows", "files", "seconds" (wall, generation included),
        "write_seconds" (in the writer), "rows_per_s" (rows / write_seconds)}``.

    Raises:
        TelemetryError: ``TELEMETRY_BAD_ARGUMENTS`` (rows or days below 1),
            ``TELEMETRY_WRITE_FAILED``.
    """
    store = TelemetryStore(settings.telemetry_url)
    workflows = (workflow,) if workflow is not None else None
    started = time.perf_counter()
    in_writer = 0.0
    written = files = 0
    for batch in synthetic_batches(rows, days, workflows=workflows, end_day=end_day, seed=seed):
        begin = time.perf_counter()
        written += store.write(METADATA_WRITES, batch)
        in_writer += time.perf_counter() - begin
        files += 1
        if on_progress is not None:
            on_progress(written, rows)
    return {
        "rows": written,
        "days": days,
        "workflows": list(workflows) if workflows else "default",
        "files": files,
        "seconds": round(time.perf_counter() - started, 3),
        "write_seconds": round(in_writer, 3),
        "rows_per_s": int(written / in_writer) if in_writer else 0,
    }


def compact_telemetry(settings: Settings, before_date: dt.date | str | None = None) -> dict[str, Any]:
    """Merge the small telemetry files of closed days (before today, UTC, by default).

    Returns:
        ``{"before_date", "partitions", "files_merged", "rows", "bytes_before", "bytes_after"}``
        (sizes in bytes).

    Raises:
        TelemetryError: ``TELEMETRY_BAD_ARGUMENTS`` (a date that is not YYYY-MM-DD),
            ``TELEMETRY_WRITE_FAILED``.
    """
    cutoff = before_date or dt.datetime.now(dt.UTC).date()
    result = TelemetryStore(settings.telemetry_url).compact(cutoff)
    return {
        "before_date": str(cutoff),
        "partitions": result.partitions,
        "files_merged": result.files_merged,
        "rows": result.rows,
        "bytes_before": result.bytes_before,
        "bytes_after": result.bytes_after,
    }
