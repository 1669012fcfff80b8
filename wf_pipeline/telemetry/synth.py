"""Synthetic telemetry rows for tests and benchmarks, generated column-wise with numpy and pyarrow.

The rows look like a busy home's: the registered frame-metadata keys plus a set of
workflow-registered keys (``<domain>.<name>``), each with a budget and a typical value size
that drifts up or down day after day (some keys grow, most stay flat); value sizes are
log-normal around that typical size, and a size over budget is a ``rejected`` row with
``METADATA_BUDGET_EXCEEDED``, as the boundary would give. Threads write several keys per
frame. Nothing is random per row in Python: each chunk is a handful of numpy draws.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow
import pyarrow.compute as pc

from wf_pipeline.errors import METADATA_BUDGET_EXCEEDED, TELEMETRY_BAD_ARGUMENTS, TelemetryError
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY
from wf_pipeline.telemetry.schema import ARROW_SCHEMA

__all__ = [
    "DAY_MS",
    "MAX_CHUNK_ROWS",
    "SyntheticKey",
    "max_synthetic_days",
    "synthetic_batches",
    "synthetic_keys",
    "synthetic_days_problem",
]

DAY_MS = 86_400_000
#: Rows per generated table at most (bounds memory: about 100 MB per million rows).
MAX_CHUNK_ROWS = 1_000_000
# Workflow-registered keys added to the registry's own, so "top 20" has a field to choose from.
_EXTRA_KEYS = 48
_DOMAINS = ("docs", "review", "tests", "summary", "lint", "deps")
_DEFAULT_WORKFLOWS = ("synthetic_a_v1", "synthetic_b_v1", "synthetic_c_v1")


@dataclass(frozen=True)
class SyntheticKey:
    """One key the generator writes: its domain, mutability class, budget and size behaviour (bytes)."""

    domain: str
    key: str
    mutability_class: str
    budget_bytes: int
    typical_bytes: float
    daily_growth: float


def synthetic_keys(seed: int = 7) -> list[SyntheticKey]:
    """The registered persisted frame-metadata keys plus `_EXTRA_KEYS` workflow keys, with sizes.

    Registered keys keep their registry budget; about one key in five grows 2-6% a day.
    """
    rng = np.random.default_rng(seed)
    keys = [
        SyntheticKey(d.owner_domain, d.name, d.mutability, d.max_bytes, d.max_bytes * 0.45, 0.0)
        for d in FRAME_KEY_REGISTRY
        if d.persisted
    ]
    for index in range(_EXTRA_KEYS):
        domain = _DOMAINS[index % len(_DOMAINS)]
        budget = int(rng.choice([256, 512, 1024, 2048, 4096]))
        growing = rng.random() < 0.2
        keys.append(
            SyntheticKey(
                domain,
                f"{domain}.key_{index:02d}",
                str(rng.choice(["annotation", "attested"])),
                budget,
                budget * float(rng.uniform(0.1, 0.5)),
                float(rng.uniform(0.02, 0.06)) if growing else 0.0,
            )
        )
    return keys


_EPOCH_DAY = dt.date(1970, 1, 1)


def max_synthetic_days(end_day: dt.date | None = None) -> int:
    """The most days a synthetic workload can span ending ``end_day`` (default today, UTC).

    Returns:
        Whole days from 1970-01-01 to ``end_day`` inclusive: every row's ``ts_ms`` (ms
        since the Unix epoch) must be >= 0, as the telemetry schema requires.
    """
    end = end_day or dt.datetime.now(dt.UTC).date()
    return (end - _EPOCH_DAY).days + 1


def synthetic_days_problem(days: int, end_day: dt.date | None = None) -> str | None:
    """Why ``days`` cannot be a synthetic workload's span, or None when it can.

    Returns:
        A sentence with the figures (``days`` and `max_synthetic_days`) for a value below
        1 or one reaching before 1970-01-01; None otherwise. Raises nothing.
    """
    limit = max_synthetic_days(end_day)
    if days < 1 or days > limit:
        return f"--days must be between 1 and {limit} (the days since 1970-01-01, UTC), got {days}"
    return None


def synthetic_batches(
    rows: int,
    days: int,
    *,
    workflows: tuple[str, ...] | None = None,
    end_day: dt.date | None = None,
    seed: int = 7,
) -> Iterator[pyarrow.Table]:
    """Yield ``rows`` synthetic ``metadata_writes`` rows as tables of one (day, workflow) each.

    Args:
        rows: how many rows in all (>= 1).
        days: over how many UTC days, ending with ``end_day`` (>= 1).
        workflows: workflow ids (default three built-in-like ids); rows are spread evenly.
        end_day: the last day (default today, UTC).
        seed: the random seed (same arguments, same rows).

    Yields:
        Tables with `ARROW_SCHEMA`, at most `MAX_CHUNK_ROWS` rows each, in day order.

    Raises:
        TelemetryError: ``TELEMETRY_BAD_ARGUMENTS`` for rows below 1, days outside
            `synthetic_days_problem`'s range, or an empty workflow id.
    """
    problem = synthetic_days_problem(days, end_day)
    if rows < 1 or problem is not None:
        raise TelemetryError(
            TELEMETRY_BAD_ARGUMENTS,
            problem or f"synth needs rows >= 1, got rows={rows}",
            rows=rows,
            days=days,
        )
    workflows = workflows or _DEFAULT_WORKFLOWS
    if not all(workflows):
        raise TelemetryError(TELEMETRY_BAD_ARGUMENTS, "a synthetic workflow id is empty")
    end = end_day or dt.datetime.now(dt.UTC).date()
    first_ms = int(dt.datetime.combine(end, dt.time(), dt.UTC).timestamp() * 1000) - (days - 1) * DAY_MS
    keys = synthetic_keys(seed)
    rng = np.random.default_rng(seed)
    cells = days * len(workflows)
    base, extra = divmod(rows, cells)
    for cell in range(cells):
        day, workflow_index = divmod(cell, len(workflows))
        count = base + (1 if cell < extra else 0)
        while count > 0:
            size = min(count, MAX_CHUNK_ROWS)
            count -= size
            yield _chunk(rng, keys, size, first_ms + day * DAY_MS, day, workflows[workflow_index])


def _strings(values: list[str], indices: np.ndarray) -> pyarrow.Array:
    return pc.take(pyarrow.array(values, pyarrow.string()), pyarrow.array(indices))


def _chunk(
    rng: np.random.Generator, keys: list[SyntheticKey], rows: int, day_ms: int, day: int, workflow: str
) -> pyarrow.Table:
    key_index = rng.integers(0, len(keys), rows)
    budgets = np.array([k.budget_bytes for k in keys], dtype=np.int64)
    typical = np.array([k.typical_bytes * (1 + k.daily_growth) ** day for k in keys])
    sizes = np.maximum(1, rng.lognormal(np.log(typical[key_index]), 0.35)).astype(np.int64)
    over = sizes > budgets[key_index]
    ts = np.sort(rng.integers(day_ms, day_ms + DAY_MS, rows, dtype=np.int64))
    # About seven keys per frame, a few frames per thread.
    frames = max(1, rows // 7)
    frame_index = rng.integers(0, frames, rows)
    salt = zlib.crc32(workflow.encode()) & 0xFFFF
    thread_pool = [f"{(day << 40) + n:016x}{salt:04x}" for n in range(max(1, frames // 3))]
    frame_pool = [f"sha256:{(day << 40) + n:064x}" for n in range(frames)]
    node_pool = [f"node-{n:08x}" for n in range(max(1, frames // 3))]
    thread_of_frame = frame_index // 3 % len(thread_pool)
    zeros = np.zeros(rows, dtype=np.int64)
    columns = {
        "ts_ms": pyarrow.array(ts),
        "workflow_id": _strings([workflow], zeros),
        "profile_version": _strings(["1.0.0"], zeros),
        "thread_id": _strings(thread_pool, thread_of_frame),
        "turn_id": _strings(["draft", "review", "final"], frame_index % 3),
        "node_id": _strings(node_pool, thread_of_frame % len(node_pool)),
        "frame_id": _strings(frame_pool, frame_index),
        "domain": _strings([k.domain for k in keys], key_index),
        "key": _strings([k.key for k in keys], key_index),
        "mutability_class": _strings([k.mutability_class for k in keys], key_index),
        "bytes": pyarrow.array(sizes),
        "budget_bytes": pyarrow.array(budgets[key_index]),
        "outcome": _strings(["accepted", "rejected"], over.astype(np.int64)),
        "error_code": pc.if_else(
            pyarrow.array(over),
            pyarrow.scalar(str(METADATA_BUDGET_EXCEEDED)),
            pyarrow.scalar(None, pyarrow.string()),
        ),
        "run_id": _strings([f"synthetic-{day:05d}-{salt:04x}"], zeros),
        "branch": pyarrow.nulls(rows, pyarrow.string()),
    }
    return pyarrow.Table.from_arrays(list(columns.values()), schema=ARROW_SCHEMA)
