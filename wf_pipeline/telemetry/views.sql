-- wf_pipeline telemetry views (DuckDB 2.0 SQL). The product runs this file as is; so can anyone.
--
-- Two variables locate the files:
--   wf_telemetry  the telemetry root ($WF_HOME/telemetry, or the WF_TELEMETRY_URL location)
--   wf_archive    the archive root ($WF_HOME/archive), for the archived_threads view
--
-- From a plain duckdb shell:
--   SET VARIABLE wf_telemetry = '/home/me/.wf/telemetry';
--   SET VARIABLE wf_archive = '/home/me/.wf/archive';
--   .read /path/to/site-packages/wf_pipeline/telemetry/views.sql
--   SELECT * FROM key_growth ORDER BY bytes DESC LIMIT 20;
--
-- From Python:
--   import duckdb, importlib.resources
--   con = duckdb.connect()
--   con.execute("SET VARIABLE wf_telemetry = '/home/me/.wf/telemetry'")
--   con.execute(importlib.resources.files("wf_pipeline.telemetry").joinpath("views.sql").read_text())
--   (or: from wf_pipeline.telemetry import connect; con = connect(settings))
--
-- Files are hive-partitioned: <table>/date=YYYY-MM-DD/workflow_id=<id>/*.parquet. The
-- directory's workflow_id (percent-decoded by DuckDB) equals the file's column; each table
-- holds one zero-row seed file, so the views work before the first write. Sizes are bytes,
-- times ts_ms (milliseconds since the Unix epoch, UTC).

-- One row per frame-metadata key written (outcome accepted) or rejected, and one per branch
-- decision (domain branch, key turns.branch). branch is taken / not_taken for a turn that
-- declares when:, else NULL; files written before that column existed read it as NULL
-- (union_by_name), as do those of artifact_writes.
CREATE OR REPLACE VIEW metadata_writes AS
SELECT * EXCLUDE (date), date AS day
FROM read_parquet(
    getvariable('wf_telemetry') || '/metadata_writes/*/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'date': DATE, 'workflow_id': VARCHAR},
    union_by_name = true
);

-- One row per artifact put (accepted), delete or expiry; key is the artifact class.
CREATE OR REPLACE VIEW artifact_writes AS
SELECT * EXCLUDE (date), date AS day
FROM read_parquet(
    getvariable('wf_telemetry') || '/artifact_writes/*/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'date': DATE, 'workflow_id': VARCHAR},
    union_by_name = true
);

-- One row per key lifecycle event: a KEK made (create), a rotation (rotate: the new primary),
-- a rewrap (data_keys moved), a retirement (retire) or a destruction (destroy: data_keys
-- shredded). event_at is a UTC timestamp, date its UTC day, period_start the first day of the
-- KEK's lineage; elapsed_ms in ms. Ids, states, counts and times only, never key material.
-- Files: key_events/date=YYYY-MM-DD/event=<event>/*.parquet.
CREATE OR REPLACE VIEW key_events AS
SELECT * EXCLUDE (date), date
FROM read_parquet(
    getvariable('wf_telemetry') || '/key_events/*/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'date': DATE, 'event': VARCHAR}
);

-- One row per audit event of privileged reads (the Parquet copy of the record store's
-- hash-chained trail, exported by `wf audit export`): seq its position, event_at a UTC
-- timestamp, date its UTC day, outcome allow or deny (code: the denial's code), bytes the
-- payload bytes returned; scope and artifact_ids are JSON text. Ids, digests and codes only.
-- Files: audit_events/date=YYYY-MM-DD/outcome=<outcome>/*.parquet.
CREATE OR REPLACE VIEW audit_events AS
SELECT * EXCLUDE (date), date
FROM read_parquet(
    getvariable('wf_telemetry') || '/audit_events/*/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'date': DATE, 'outcome': VARCHAR}
);

-- Growth per key per UTC day, over both tables (source names the table): accepted writes and
-- their bytes, rejections, and bytes removed by deletes and expiries.
CREATE OR REPLACE VIEW key_growth AS
SELECT
    day,
    'metadata_writes' AS source,
    domain,
    key,
    count(*) FILTER (WHERE outcome = 'accepted') AS writes,
    coalesce(sum(bytes) FILTER (WHERE outcome = 'accepted'), 0)::BIGINT AS bytes,
    count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
    0::BIGINT AS removed_bytes
FROM metadata_writes
GROUP BY ALL
UNION ALL
SELECT
    day,
    'artifact_writes' AS source,
    domain,
    key,
    count(*) FILTER (WHERE outcome = 'accepted') AS writes,
    coalesce(sum(bytes) FILTER (WHERE outcome = 'accepted'), 0)::BIGINT AS bytes,
    count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
    coalesce(sum(bytes) FILTER (WHERE outcome IN ('deleted', 'expired')), 0)::BIGINT AS removed_bytes
FROM artifact_writes
GROUP BY ALL;

-- Growth per frame: the accepted metadata writes of each frame, their keys and bytes.
CREATE OR REPLACE VIEW frame_growth AS
SELECT
    workflow_id,
    thread_id,
    frame_id,
    count(*) AS writes,
    count(DISTINCT key) AS keys,
    sum(bytes)::BIGINT AS bytes,
    min(ts_ms) AS first_ts_ms,
    max(ts_ms) AS last_ts_ms
FROM metadata_writes
WHERE outcome = 'accepted' AND frame_id IS NOT NULL
GROUP BY ALL;

-- Headroom per key: value sizes of every write attempt (accepted or rejected) against the
-- key's budget. p50/p95 are continuous quantiles (DuckDB quantile_cont, linear interpolation);
-- p95_ratio = p95_bytes / budget_bytes (NULL without a budget).
-- budget_headroom_between(since_ms, until_ms) is the same over the writes with
-- since_ms <= ts_ms < until_ms (reports over --since, the daily Dagster asset); the view is
-- that macro over all time, so the rule is written once.
CREATE OR REPLACE MACRO budget_headroom_between(since_ms, until_ms) AS TABLE
SELECT
    domain,
    key,
    count(*) AS writes,
    count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
    max(budget_bytes) AS budget_bytes,
    quantile_cont(bytes, 0.5) AS p50_bytes,
    quantile_cont(bytes, 0.95) AS p95_bytes,
    max(bytes) AS max_bytes,
    quantile_cont(bytes, 0.95) / nullif(max(budget_bytes), 0) AS p95_ratio,
    max(budget_bytes) - max(bytes) AS headroom_bytes
FROM metadata_writes
WHERE outcome IN ('accepted', 'rejected') AND ts_ms >= since_ms AND ts_ms < until_ms
GROUP BY ALL;

CREATE OR REPLACE VIEW budget_headroom AS
SELECT * FROM budget_headroom_between(0, 9223372036854775807);

-- Threads whose record rows compaction (`wf compact`) moved out of the record store into
-- Parquet under wf_archive: the thread record's columns, plus archived_at_ms (ms) and
-- compaction_id. Their turns, gates, prompt and artifact links and frames sit beside them
-- in <wf_archive>/<table>/*.parquet. A zero-row seed file keeps the view valid before the
-- first compaction; the product writes it when it first opens these views (any
-- `wf telemetry` command, the Dagster telemetry assets) or compacts. Without wf_archive,
-- the archive beside wf_telemetry is read (the default layout: $WF_HOME/archive).
CREATE OR REPLACE VIEW archived_threads AS
SELECT *
FROM read_parquet(
    coalesce(getvariable('wf_archive'), getvariable('wf_telemetry') || '/../archive') || '/threads/*.parquet',
    union_by_name = true
);
