"""The ``wf telemetry report`` use case: a growth, headroom or rejections table, and its chart.

The rows come from the product's DuckDB views (`wf_pipeline.telemetry.reports`) over the
telemetry of ``settings.telemetry_url``, read under the store's shared lock so a
compaction running at the same time is seen whole or not at all. ``--since`` is parsed by
`parse_duration_ms`, the parser retention windows use.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb

from wf_pipeline.errors import (
    TELEMETRY_BAD_ARGUMENTS,
    TELEMETRY_CHART_WRITE_FAILED,
    TelemetryError,
    os_reason,
)
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.encode import json_value
from wf_pipeline.telemetry.query import install_views
from wf_pipeline.telemetry.reports import REPORTS

__all__ = ["REPORT_KINDS", "telemetry_report"]

#: The kinds ``wf telemetry report`` accepts.
REPORT_KINDS: tuple[str, ...] = tuple(REPORTS)


def _json_value(value: Any) -> Any:
    # pandas turns DATE columns into midnight Timestamps and counts into floats: undo that
    # first (a day stays YYYY-MM-DD, a whole count an int, a ratio 4 decimals), then the one
    # encoder (`json_value`) makes everything else valid JSON.
    if hasattr(value, "item") and not isinstance(value, (dt.date, dt.datetime)):
        value = value.item()
    if isinstance(value, dt.datetime) and value.time() == dt.time() and value.tzinfo is None:
        return value.date().isoformat()
    if isinstance(value, float) and math.isfinite(value):
        return int(value) if value.is_integer() else round(value, 4)
    return json_value(value)


def _png_size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk follows the signature: length(4) type(4) width(4) height(4), big-endian (PNG spec 11.2.2).
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _write_png(path: Path, png: bytes) -> None:
    # A temp name in the same folder, then a rename: the file is whole or absent, never half written.
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        part.write_bytes(png)
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise TelemetryError(
            TELEMETRY_CHART_WRITE_FAILED,
            f"cannot write the chart to {path}: {os_reason(exc)}",
            path=str(path),
        ) from None


def telemetry_report(
    settings: Settings,
    kind: str,
    *,
    since: str = "7d",
    png: Path | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Report ``kind`` over the telemetry written since ``since`` ago; with ``png``, its chart too.

    Args:
        settings: where the telemetry is (``telemetry_url``).
        kind: ``growth`` (bytes and writes per key per UTC day, the ``key_growth`` view),
            ``headroom`` (p50/p95/max value size per key against its budget, with its level
            ``ok``/``warn``/``error``, `wf_pipeline.telemetry.headroom`) or ``rejections``
            (rejected metadata writes per day, key and error code).
        since: how far back, e.g. ``7d``, ``12h``, or ``forever`` (all rows); growth
            counts whole UTC days from the day ``since`` ago falls on.
        png: a file to draw the chart into (PNG, 1000 x 500 pixels), replaced whole.
        now_ms: the end of the range (ms since the epoch, UTC; default now).

    Returns:
        ``{"report", "since", "since_ms" (None for forever), "until_ms", "columns": [...],
        "rows": [{column: value}] (dates ISO text, sizes in bytes), "chart": None or
        {"path", "bytes" (file size), "width", "height" (pixels)}}``. Keys, sizes, counts
        and codes only.

    Raises:
        TelemetryError: ``TELEMETRY_BAD_ARGUMENTS`` (an unknown kind),
            ``TELEMETRY_CHART_WRITE_FAILED`` (the PNG cannot be written; nothing is left
            under its name).
        MetadataError: ``METADATA_BAD_DURATION`` (``since`` is no duration).
    """
    if kind not in REPORTS:
        raise TelemetryError(
            TELEMETRY_BAD_ARGUMENTS,
            f"no telemetry report {kind!r} (reports: {', '.join(REPORT_KINDS)})",
            report=str(kind),
        )
    window_ms = parse_duration_ms(since)
    until_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since_ms = None if window_ms is None else until_ms - window_ms
    spec = REPORTS[kind]

    con = duckdb.connect()
    try:
        with install_views(con, settings):
            frame = spec.frame(con, since_ms=since_ms, until_ms=until_ms)
    finally:
        con.close()
    columns = [str(c) for c in frame.columns]
    rows = [{c: _json_value(v) for c, v in zip(columns, row)} for row in frame.itertuples(index=False)]
    chart = None
    if png is not None:
        image = spec.chart(frame)
        path = Path(png).expanduser().absolute()
        _write_png(path, image)
        width, height = _png_size(image)
        chart = {"path": str(path), "bytes": len(image), "width": width, "height": height}
    return {
        "report": kind,
        "since": since,
        "since_ms": since_ms,
        "until_ms": until_ms,
        "columns": columns,
        "rows": rows,
        "chart": chart,
    }
