"""The ``telemetry`` asset group: daily growth and budget headroom, computed with DuckDB.

Two assets, partitioned by UTC day (`TELEMETRY_PARTITIONS`; today's partition is open,
so today's writes are measured while they happen):

- ``metadata_growth_daily``: the ``key_growth`` rows of the day (bytes, writes,
  rejections and removals per key); its materialization carries a chart of the 14
  days up to the partition as a Markdown image (a base64 PNG data URI, which the UI's
  Markdown metadata view shows), plus totals.
- ``budget_headroom``: p50/p95/max value size per key over the day's writes against the
  key's budget, with each key's level (`wf_pipeline.telemetry.headroom`). Its check
  ``p95_within_budget`` warns (severity WARN) when a key's p95 reaches 80% of its budget
  and fails (ERROR) at 95%, so people hear of a key before its writes are rejected.

Both read the Parquet telemetry (located by the ``wf_settings`` resource: settings only, no
runtime) through dagster-duckdb's `DuckDBResource` (an in-memory
database per step, the product's views created on its connection) and return pandas
frames typed by the telemetry pandera models through dagster-pandera. Frames and
metadata hold keys, sizes and counts only.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    InitResourceContext,
    MetadataValue,
    Output,
    ResourceDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._utils.warnings import disable_dagster_warnings
from dagster_duckdb import DuckDBResource
from dagster_pandera import pandera_schema_to_dagster_type

from wf_pipeline.compiler.resources import RUNTIME_CONFIG_SCHEMA, settings_from_config
from wf_pipeline.telemetry.charts import growth_chart_png, headroom_chart_png
from wf_pipeline.telemetry.headroom import ERROR_RATIO, WARN_RATIO
from wf_pipeline.telemetry.query import install_views
from wf_pipeline.telemetry.reports import (
    DAY_MS,
    BudgetHeadroomModel,
    KeyGrowthModel,
    day_bounds_ms,
    growth_frame,
    headroom_frame,
)

TELEMETRY_GROUP = "telemetry"
TELEMETRY_JOB = "wf_telemetry"
TELEMETRY_SCHEDULE = "wf_telemetry_hourly"
DUCKDB_KEY = "telemetry_duckdb"
SETTINGS_KEY = "wf_settings"
GROWTH_ASSET = AssetKey("metadata_growth_daily")
HEADROOM_ASSET = AssetKey("budget_headroom")
HEADROOM_CHECK = "p95_within_budget"
# The first day partition; earlier telemetry (there is none: the product began writing it
# later) would need a backfill of its own definition.
TELEMETRY_START_DATE = "2026-01-01"
# Days drawn in the growth chart of a partition, the partition's day included.
CHART_DAYS = 14

#: Daily UTC partitions; ``end_offset=1`` makes today's (still open) day a partition.
TELEMETRY_PARTITIONS = DailyPartitionsDefinition(start_date=TELEMETRY_START_DATE, end_offset=1)

# dagster-pandera's converter is marked beta; its warning is Dagster's to scope.
with disable_dagster_warnings():
    KEY_GROWTH_TYPE = pandera_schema_to_dagster_type(KeyGrowthModel)
    BUDGET_HEADROOM_TYPE = pandera_schema_to_dagster_type(BudgetHeadroomModel)


def _markdown_chart(png: bytes, title: str) -> MetadataValue:
    # The Dagster tutorial's way to show a plot: Markdown metadata with a data-URI image.
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def _day(context: AssetExecutionContext) -> tuple[str, int, int]:
    day = context.partition_key
    start_ms, end_ms = day_bounds_ms(day)
    return day, start_ms, end_ms


@asset(
    key=GROWTH_ASSET,
    group_name=TELEMETRY_GROUP,
    partitions_def=TELEMETRY_PARTITIONS,
    dagster_type=KEY_GROWTH_TYPE,
    required_resource_keys={SETTINGS_KEY, DUCKDB_KEY},
    kinds={"duckdb", "parquet"},
    description="Bytes and writes per metadata key and artifact class on one UTC day (key_growth view)",
)
def metadata_growth_daily(context: AssetExecutionContext) -> Iterator[Any]:
    """The day's ``key_growth`` rows, with totals and a 14-day growth chart as metadata."""
    day, start_ms, end_ms = _day(context)
    settings = context.resources.wf_settings
    with context.resources.telemetry_duckdb.get_connection() as con:
        with install_views(con, settings):
            frame = growth_frame(con, since_ms=start_ms, until_ms=end_ms)
            history = growth_frame(con, since_ms=start_ms - (CHART_DAYS - 1) * DAY_MS, until_ms=end_ms)
    png = growth_chart_png(history, title=f"Bytes written per key, {CHART_DAYS} days to {day}")
    yield Output(
        frame,
        metadata={
            "day": day,
            "keys": int(frame["key"].nunique()),
            "writes": int(frame["writes"].sum()),
            "bytes": MetadataValue.int(int(frame["bytes"].sum())),
            "rejected": int(frame["rejected"].sum()),
            "removed_bytes": int(frame["removed_bytes"].sum()),
            "chart_png_bytes": len(png),
            "growth_chart": _markdown_chart(png, f"Growth to {day}"),
        },
    )


def _headroom_check_spec() -> AssetCheckSpec:
    # Partitioned checks are a Dagster preview feature; its warning is Dagster's to scope.
    with disable_dagster_warnings():
        return AssetCheckSpec(
            name=HEADROOM_CHECK,
            asset=HEADROOM_ASSET,
            blocking=False,
            description=(
                f"WARN when a key's p95 value size reaches {WARN_RATIO:.0%} of its budget, "
                f"ERROR at {ERROR_RATIO:.0%} (before its writes are rejected)"
            ),
            partitions_def=TELEMETRY_PARTITIONS,
        )


@asset(
    key=HEADROOM_ASSET,
    group_name=TELEMETRY_GROUP,
    partitions_def=TELEMETRY_PARTITIONS,
    dagster_type=BUDGET_HEADROOM_TYPE,
    required_resource_keys={SETTINGS_KEY, DUCKDB_KEY},
    check_specs=[_headroom_check_spec()],
    kinds={"duckdb", "parquet"},
    description="p50/p95/max value size per metadata key against its budget, over one UTC day",
)
def budget_headroom(context: AssetExecutionContext) -> Iterator[Any]:
    """The day's headroom per key and the ``p95_within_budget`` check's verdict."""
    day, start_ms, end_ms = _day(context)
    settings = context.resources.wf_settings
    with context.resources.telemetry_duckdb.get_connection() as con:
        with install_views(con, settings):
            frame = headroom_frame(con, since_ms=start_ms, until_ms=end_ms)
    warn = frame[frame["level"] == "warn"]
    error = frame[frame["level"] == "error"]
    worst = frame.dropna(subset=["p95_ratio"]).head(1)
    png = headroom_chart_png(frame, title=f"Budget headroom per key on {day} (p95 / budget)")
    yield Output(
        frame,
        metadata={
            "day": day,
            "keys": len(frame),
            "warn_keys": len(warn),
            "error_keys": len(error),
            "rejected": int(frame["rejected"].sum()),
            "worst_p95_ratio": float(worst["p95_ratio"].iloc[0]) if not worst.empty else 0.0,
            "headroom_chart": _markdown_chart(png, f"Headroom on {day}"),
        },
    )
    yield _headroom_evaluation(day, frame, warn, error)
    # A partitioned check's verdict is the evaluation above; its output only ends the step.
    for output_name in context.assets_def.check_specs_by_output_name:
        yield Output(None, output_name=output_name)


def _headroom_evaluation(day: str, frame: Any, warn: Any, error: Any) -> AssetCheckEvaluation:
    def keys(rows: Any) -> str:
        return ", ".join(
            f"{d}/{k} {r:.0%}" for d, k, r in zip(rows["domain"], rows["key"], rows["p95_ratio"])
        )

    if not error.empty:
        severity, passed = AssetCheckSeverity.ERROR, False
        description = f"{len(error)} key(s) at or above {ERROR_RATIO:.0%} of budget: {keys(error)}"
    elif not warn.empty:
        severity, passed = AssetCheckSeverity.WARN, False
        description = f"{len(warn)} key(s) at or above {WARN_RATIO:.0%} of budget: {keys(warn)}"
    else:
        severity, passed = AssetCheckSeverity.WARN, True
        # Fixed-width keys (digests) sit at their budget by schema and cannot grow: not a finding.
        description = (
            f"every budgeted key's p95 is below {WARN_RATIO:.0%} of its budget "
            "(fixed-width keys, whose values have one size by schema, excepted)"
        )
    return AssetCheckEvaluation(
        asset_key=HEADROOM_ASSET,
        check_name=HEADROOM_CHECK,
        passed=passed,
        partition=day,
        blocking=False,
        severity=severity,
        description=description,
        metadata={
            "warn_keys": MetadataValue.text(keys(warn) or "-"),
            "error_keys": MetadataValue.text(keys(error) or "-"),
            "budgeted_keys": int(frame["p95_ratio"].notna().sum()),
            "fixed_keys": int((frame["level"] == "fixed").sum()) if not frame.empty else 0,
        },
    )


def telemetry_assets() -> list[AssetsDefinition]:
    """The assets of the ``telemetry`` group: ``metadata_growth_daily`` and ``budget_headroom``."""
    return [metadata_growth_daily, budget_headroom]


def telemetry_job() -> Any:
    """The ``wf_telemetry`` asset job over the ``telemetry`` group, partitioned by day."""
    return define_asset_job(
        name=TELEMETRY_JOB,
        selection=AssetSelection.groups(TELEMETRY_GROUP),
        description="Telemetry growth and budget headroom of one UTC day (DuckDB over the Parquet telemetry)",
        tags={"wf/kind": "telemetry"},
    )


def telemetry_schedule(job: Any) -> ScheduleDefinition:
    """Every hour (minute 5, UTC) materialize today's partition of ``job`` (the `telemetry_job`).

    At the first tick of a day it also requests yesterday's partition, so each closed day
    ends with its final figures. Run keys are ``<day>@<tick hour>``: a tick the daemon
    retries never launches twice. Running by default: the headroom check only warns
    before rejections if it runs while they approach.
    """

    @schedule(
        name=TELEMETRY_SCHEDULE,
        job=job,
        cron_schedule="5 * * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Hourly: today's telemetry growth and headroom (and, after midnight, yesterday's final figures)",
    )
    def _hourly(context: ScheduleEvaluationContext) -> list[RunRequest]:
        return telemetry_run_requests(context.scheduled_execution_time)

    return _hourly


def telemetry_run_requests(tick: Any) -> list[RunRequest]:
    """The runs of the hourly telemetry tick at ``tick`` (an aware datetime): today's day, and yesterday's in hour 0."""
    tick = tick.astimezone(dt.UTC)
    days = [tick.date()]
    if tick.hour == 0:
        days.insert(0, tick.date() - dt.timedelta(days=1))
    stamp = tick.strftime("%Y-%m-%dT%H")
    return [RunRequest(run_key=f"{day.isoformat()}@{stamp}", partition_key=day.isoformat()) for day in days]


def _settings_from_config(context: InitResourceContext) -> Any:
    return settings_from_config(context.resource_config or {})


def telemetry_resources(env: Any = None) -> dict[str, Any]:
    """The resources of the telemetry assets: their settings and an in-memory DuckDB per step.

    Args:
        env: the CLI's open `RuntimeEnv` (its settings are used as they are), or None: the
            settings come from the resource's config, laid out as ``wf_runtime``'s, unset
            fields from the WF_ variables of the process. Only settings, not a whole runtime:
            telemetry needs no record store, CAS or provider, so a provider without its key
            never stops it.

    Returns:
        ``{"wf_settings": ..., "telemetry_duckdb": DuckDBResource(":memory:")}``.
    """
    settings = (
        ResourceDefinition.hardcoded_resource(env.settings, "the launching process's wf settings")
        if env is not None
        else ResourceDefinition(
            _settings_from_config,
            config_schema=RUNTIME_CONFIG_SCHEMA,
            description="wf settings from this config (unset fields: WF_ variables)",
        )
    )
    return {SETTINGS_KEY: settings, DUCKDB_KEY: DuckDBResource(database=":memory:")}
