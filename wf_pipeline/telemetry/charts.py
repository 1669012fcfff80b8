"""PNG charts of the telemetry reports, drawn with matplotlib's object API.

Each chart is its own `matplotlib.figure.Figure` on its own Agg canvas
(`FigureCanvasAgg`): nothing goes through pyplot, so no figure registry, backend
choice or rcParams of the process is touched, and charts may be drawn from several
threads (Dagster steps) at once. Input frames hold ids, dates, sizes and counts only.
"""

from __future__ import annotations

import io
from typing import Final

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wf_pipeline.telemetry.headroom import ERROR_RATIO, WARN_RATIO, headroom_level, is_fixed_width

__all__ = [
    "CHART_DPI",
    "CHART_SIZE_IN",
    "MAX_SERIES",
    "growth_chart_png",
    "headroom_chart_png",
    "rejections_chart_png",
]

#: Figure size in inches and resolution: 1000 x 500 pixels.
CHART_SIZE_IN: Final = (10.0, 5.0)
CHART_DPI: Final = 100
#: Keys drawn as their own line or bar segment; the rest are summed as "other keys".
MAX_SERIES: Final = 8

_LEVEL_COLOURS: Final = {
    "fixed": "#5c8fd6",
    "ok": "#4c9a2a",
    "warn": "#e0a800",
    "error": "#c62828",
    "unbudgeted": "#9e9e9e",
}


def _figure() -> tuple[Figure, object]:
    figure = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CHART_DPI)
    return buffer.getvalue()


def _no_rows(axes: object, title: str) -> None:
    axes.set_title(title)
    axes.text(0.5, 0.5, "no telemetry rows in this range", ha="center", va="center", fontsize=14)
    axes.set_axis_off()


def _top_keys(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    # Many keys make an unreadable chart: keep the largest, sum the rest into one series.
    totals = frame.groupby("key")[value].sum().sort_values(ascending=False)
    keep = set(totals.index[:MAX_SERIES])
    if len(totals) <= MAX_SERIES:
        return frame
    frame = frame.copy()
    frame["key"] = frame["key"].where(frame["key"].isin(keep), "other keys")
    return frame.groupby(["day", "key"], as_index=False)[value].sum()


def growth_chart_png(frame: pd.DataFrame, *, title: str = "Metadata growth per key") -> bytes:
    """A line chart of bytes written per key per day.

    Args:
        frame: columns ``day`` (date or ISO text), ``key`` and ``bytes`` (bytes written
            that day), one row per key and day, as the ``key_growth`` view gives them.
        title: the chart's title.

    Returns:
        The PNG file's bytes (1000 x 500 pixels). An empty frame draws a chart that says
        so. Raises ``KeyError`` for a missing column.
    """
    figure, axes = _figure()
    if frame.empty:
        _no_rows(axes, title)
        return _png(figure)
    frame = frame[["day", "key", "bytes"]].assign(day=lambda f: f["day"].astype(str))
    frame = _top_keys(frame, "bytes")
    table = frame.pivot_table(index="day", columns="key", values="bytes", aggfunc="sum", fill_value=0)
    table = table.sort_index()
    positions = range(len(table.index))
    for key in table.columns:
        axes.plot(positions, table[key].to_numpy(), marker="o", label=str(key))
    axes.set_xticks(list(positions), list(table.index), rotation=45, ha="right")
    axes.set_ylabel("bytes written per day")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def headroom_chart_png(
    frame: pd.DataFrame, *, title: str = "Budget headroom per key (p95 / budget)"
) -> bytes:
    """A bar chart of each budgeted key's p95 size as a share of its budget, with the 80% and 95% lines.

    Args:
        frame: columns ``key``, ``p95_bytes`` and ``budget_bytes`` (bytes), one row per
            key, as the ``budget_headroom`` view gives them. Keys without a budget are left out.
        title: the chart's title.

    Returns:
        The PNG file's bytes (1000 x 500 pixels); bars are coloured by the frame's ``level``
        column, or by `headroom_level` (with `is_fixed_width`) when it has none.
        Raises ``KeyError`` for a missing column.
    """
    figure, axes = _figure()
    budgeted = (
        frame[frame["budget_bytes"].notna() & (frame["budget_bytes"] > 0)] if not frame.empty else frame
    )
    if budgeted.empty:
        _no_rows(axes, title)
        return _png(figure)
    budgeted = budgeted.assign(ratio=budgeted["p95_bytes"] / budgeted["budget_bytes"] * 100.0)
    budgeted = budgeted.sort_values("ratio", ascending=True).tail(MAX_SERIES * 3)
    # The frame's own level column when it has one (`headroom_frame`), so chart and table agree.
    levels = (
        list(budgeted["level"])
        if "level" in budgeted.columns
        else [
            headroom_level(p95, budget, fixed_width=is_fixed_width(domain, key))
            for domain, key, p95, budget in zip(
                budgeted.get("domain", [None] * len(budgeted)),
                budgeted["key"],
                budgeted["p95_bytes"],
                budgeted["budget_bytes"],
                strict=True,
            )
        ]
    )
    colours = [_LEVEL_COLOURS[level] for level in levels]
    axes.barh([str(k) for k in budgeted["key"]], budgeted["ratio"].to_numpy(), color=colours)
    axes.axvline(WARN_RATIO * 100, color=_LEVEL_COLOURS["warn"], linestyle="--", label="warn (80%)")
    axes.axvline(ERROR_RATIO * 100, color=_LEVEL_COLOURS["error"], linestyle="--", label="error (95%)")
    axes.set_xlabel("p95 value size, % of the key's budget")
    axes.set_xlim(0, max(110.0, float(budgeted["ratio"].max()) * 1.05))
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)


def rejections_chart_png(frame: pd.DataFrame, *, title: str = "Rejected writes per day") -> bytes:
    """A stacked bar chart of rejected writes per day, one segment per key.

    Args:
        frame: columns ``day``, ``key`` and ``rejections`` (a count), one row per key and day.
        title: the chart's title.

    Returns:
        The PNG file's bytes (1000 x 500 pixels). Raises ``KeyError`` for a missing column.
    """
    figure, axes = _figure()
    if frame.empty:
        _no_rows(axes, title)
        return _png(figure)
    frame = frame[["day", "key", "rejections"]].assign(day=lambda f: f["day"].astype(str))
    frame = _top_keys(frame, "rejections")
    table = frame.pivot_table(index="day", columns="key", values="rejections", aggfunc="sum", fill_value=0)
    table = table.sort_index()
    positions = list(range(len(table.index)))
    bottom = [0.0] * len(positions)
    for key in table.columns:
        heights = table[key].to_numpy(dtype=float)
        axes.bar(positions, heights, bottom=bottom, label=str(key))
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes.set_xticks(positions, list(table.index), rotation=45, ha="right")
    axes.set_ylabel("rejected writes")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)
