"""The telemetry reports people look at: growth, headroom and rejections, as tables and charts.

Every report is a query over the product's DuckDB views (``views.sql``): ``growth`` reads
``key_growth``, ``headroom`` the ``budget_headroom_between`` table macro (the same rule
as the ``budget_headroom`` view, over a time range), ``rejections`` the rejected rows of
``metadata_writes``. The headroom table carries each key's `headroom_level`, the rule the
Dagster asset check applies too. The frames the Dagster telemetry assets return are
checked by the pandera models here (`KeyGrowthModel`, `BudgetHeadroomModel`), which
dagster-pandera turns into Dagster types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import duckdb
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from wf_pipeline.telemetry.charts import growth_chart_png, headroom_chart_png, rejections_chart_png
from wf_pipeline.telemetry.headroom import LEVELS, headroom_level, is_fixed_width

__all__ = [
    "DAY_MS",
    "REPORTS",
    "BudgetHeadroomModel",
    "KeyGrowthModel",
    "ReportSpec",
    "day_bounds_ms",
    "growth_frame",
    "headroom_frame",
    "rejections_frame",
    "report_frame",
]

DAY_MS: Final = 86_400_000
# The largest ts_ms (BIGINT): the open end of a range.
_END_OF_TIME_MS: Final = 2**63 - 1


class KeyGrowthModel(pa.DataFrameModel):
    """Growth per key per UTC day (the ``key_growth`` view): counts and bytes are whole numbers >= 0."""

    day: Series[pd.Timestamp] = pa.Field(coerce=True)
    source: Series[str] = pa.Field(isin=["metadata_writes", "artifact_writes"])
    domain: Series[str]
    key: Series[str]
    writes: Series[int] = pa.Field(ge=0, coerce=True)
    bytes: Series[int] = pa.Field(ge=0, coerce=True)
    rejected: Series[int] = pa.Field(ge=0, coerce=True)
    removed_bytes: Series[int] = pa.Field(ge=0, coerce=True)

    class Config:
        strict = True
        name = "KeyGrowth"
        description = "Bytes and writes per telemetry key per UTC day (ids and sizes only)"


class BudgetHeadroomModel(pa.DataFrameModel):
    """Headroom per key (``budget_headroom``) plus its `headroom_level`; sizes in bytes."""

    domain: Series[str]
    key: Series[str]
    writes: Series[int] = pa.Field(ge=0, coerce=True)
    rejected: Series[int] = pa.Field(ge=0, coerce=True)
    budget_bytes: Series[float] = pa.Field(nullable=True, ge=0, coerce=True)
    p50_bytes: Series[float] = pa.Field(ge=0, coerce=True)
    p95_bytes: Series[float] = pa.Field(ge=0, coerce=True)
    max_bytes: Series[int] = pa.Field(ge=0, coerce=True)
    p95_ratio: Series[float] = pa.Field(nullable=True, ge=0, coerce=True)
    headroom_bytes: Series[float] = pa.Field(nullable=True, coerce=True)
    level: Series[str] = pa.Field(isin=list(LEVELS))

    class Config:
        strict = True
        name = "BudgetHeadroom"
        description = (
            "p50/p95/max value size per key against its budget, with its level (fixed/ok/warn/error)"
        )


def day_bounds_ms(day: dt.date | str) -> tuple[int, int]:
    """The UTC day ``day`` as ``(start_ms, end_ms)``, end exclusive, in ms since the epoch.

    Raises ``ValueError`` for text that is not ``YYYY-MM-DD``.
    """
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    start_ms = int(start.timestamp() * 1000)
    return start_ms, start_ms + DAY_MS


def _since_day(since_ms: int | None) -> dt.date:
    if since_ms is None:
        return dt.date(1970, 1, 1)
    return dt.datetime.fromtimestamp(since_ms / 1000, tz=dt.UTC).date()


def growth_frame(
    con: duckdb.DuckDBPyConnection, *, since_ms: int | None, until_ms: int | None = None
) -> pd.DataFrame:
    """``key_growth`` rows of the UTC days from the day of ``since_ms`` to the day before ``until_ms``.

    Args:
        con: a connection with the telemetry views (`wf_pipeline.telemetry.query`).
        since_ms: start (ms since the epoch; its whole UTC day counts); None: from the start.
        until_ms: end, exclusive (None: no end); a day counts when it starts before it.

    Returns:
        Columns of `KeyGrowthModel`, sorted by day, then bytes (largest first), then key.
        Raises duckdb errors unchanged.
    """
    until_day = (
        dt.date(9999, 12, 31)
        if until_ms is None
        else dt.datetime.fromtimestamp((until_ms - 1) / 1000, tz=dt.UTC).date()
    )
    frame = con.execute(
        "SELECT day, source, domain, key, writes, bytes, rejected, removed_bytes FROM key_growth "
        "WHERE day >= ? AND day <= ? ORDER BY day, bytes DESC, source, domain, key",
        [_since_day(since_ms), until_day],
    ).df()
    return KeyGrowthModel.validate(frame) if not frame.empty else frame


def headroom_frame(
    con: duckdb.DuckDBPyConnection, *, since_ms: int | None, until_ms: int | None = None
) -> pd.DataFrame:
    """Headroom per key over the writes with ``since_ms <= ts_ms < until_ms``, with each key's level.

    Args:
        con: a connection with the telemetry views and macros.
        since_ms: start in ms since the epoch (None: from the start).
        until_ms: end, exclusive (None: no end).

    Returns:
        Columns of `BudgetHeadroomModel`; the ``level`` column is `headroom_level` of
        ``p95_bytes`` and ``budget_bytes``. Sorted by p95 ratio, largest first (keys without
        a budget last). Raises duckdb errors unchanged.
    """
    frame = con.execute(
        "SELECT domain, key, writes, rejected, budget_bytes, p50_bytes, p95_bytes, max_bytes, "
        "p95_ratio, headroom_bytes FROM budget_headroom_between(?, ?) "
        "ORDER BY p95_ratio DESC NULLS LAST, domain, key",
        [0 if since_ms is None else since_ms, _END_OF_TIME_MS if until_ms is None else until_ms],
    ).df()
    frame["level"] = [
        headroom_level(p95, budget, fixed_width=is_fixed_width(domain, key))
        for domain, key, p95, budget in zip(
            frame["domain"], frame["key"], frame["p95_bytes"], frame["budget_bytes"], strict=True
        )
    ]
    return BudgetHeadroomModel.validate(frame) if not frame.empty else frame


def rejections_frame(
    con: duckdb.DuckDBPyConnection, *, since_ms: int | None, until_ms: int | None = None
) -> pd.DataFrame:
    """Rejected frame-metadata writes per UTC day, key and error code.

    Args:
        con: a connection with the telemetry views.
        since_ms: start in ms since the epoch (None: from the start).
        until_ms: end, exclusive (None: no end).

    Returns:
        Columns ``day``, ``domain``, ``key``, ``error_code``, ``rejections`` (count),
        ``max_bytes`` (largest rejected value, bytes) and ``budget_bytes``; sorted by day,
        then count (largest first). Raises duckdb errors unchanged.
    """
    return con.execute(
        "SELECT day, domain, key, error_code, count(*) AS rejections, max(bytes) AS max_bytes, "
        "max(budget_bytes) AS budget_bytes FROM metadata_writes "
        "WHERE outcome = 'rejected' AND ts_ms >= ? AND ts_ms < ? "
        "GROUP BY ALL ORDER BY day, rejections DESC, domain, key, error_code",
        [0 if since_ms is None else since_ms, _END_OF_TIME_MS if until_ms is None else until_ms],
    ).df()


@dataclass(frozen=True)
class ReportSpec:
    """One report: how its rows are read and how its chart is drawn.

    Attributes:
        kind: ``growth``, ``headroom`` or ``rejections``.
        frame: ``(con, since_ms=, until_ms=) -> DataFrame``.
        chart: ``DataFrame -> PNG bytes`` (`wf_pipeline.telemetry.charts`; rows of the
            same (day, key) are summed there, an empty frame draws a "no rows" chart).
    """

    kind: str
    frame: Callable[..., pd.DataFrame]
    chart: Callable[[pd.DataFrame], bytes]


#: The reports of ``wf telemetry report``, by kind.
REPORTS: Final[dict[str, ReportSpec]] = {
    "growth": ReportSpec("growth", growth_frame, growth_chart_png),
    "headroom": ReportSpec("headroom", headroom_frame, headroom_chart_png),
    "rejections": ReportSpec("rejections", rejections_frame, rejections_chart_png),
}


def report_frame(
    con: duckdb.DuckDBPyConnection, kind: str, *, since_ms: int | None, until_ms: int | None = None
) -> pd.DataFrame:
    """The rows of report ``kind`` (a key of `REPORTS`) over ``[since_ms, until_ms)``.

    Raises ``KeyError`` for an unknown kind (the service checks kinds first).
    """
    return REPORTS[kind].frame(con, since_ms=since_ms, until_ms=until_ms)
