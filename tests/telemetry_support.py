"""Helpers for the telemetry report and Dagster telemetry tests: rows through the product's
recorder, and a PNG reader that checks what a person would see."""

from __future__ import annotations

import io
import struct

import numpy as np
from matplotlib import image as mpimg

from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import TelemetryRecorder, TelemetryStore

DAY_MS = 86_400_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def recorder(settings: Settings) -> TelemetryRecorder:
    """The product's recorder over the settings' telemetry store."""
    return TelemetryRecorder(TelemetryStore(settings.telemetry_url))


def write(
    rec: TelemetryRecorder,
    *,
    key: str,
    size: int,
    budget: int | None,
    ts_ms: int,
    outcome: str = "accepted",
    error_code: str | None = None,
    workflow_id: str = "docs_writer_thread_v1",
    frame: str = "frame-1",
    domain: str = "runtime",
) -> None:
    """Buffer one metadata_writes row (ids and sizes only)."""
    rec.metadata_write(
        workflow_id=workflow_id,
        profile_version="1.0.0",
        thread_id="thread-1",
        turn_id="turn-1",
        node_id="node-1",
        frame_id=frame,
        domain=domain,
        key=key,
        mutability_class="attested",
        bytes=size,
        budget_bytes=budget,
        outcome=outcome,
        error_code=error_code,
        run_id="run-1",
        ts_ms=ts_ms,
    )


def png_facts(data: bytes) -> tuple[int, int, float]:
    """(width, height, pixel variance) of a PNG: size from its IHDR chunk, pixels decoded by matplotlib.

    Asserts the PNG signature and that the IHDR size matches the decoded image's shape.
    """
    assert data[:8] == PNG_SIGNATURE
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width)
    return width, height, float(np.var(pixels[..., :3]))
