"""P5: telemetry at scale: ingest through the product's writer, and the top-20 growing keys query.

In a fresh home, `wf_pipeline.service.synth_telemetry` writes 10 million synthetic
``metadata_writes`` rows over 30 days and three workflows (numpy/pyarrow generation, then
`TelemetryStore.write`: pandera validation, hive partitioning, Parquet). Then the query
below runs five times through `wf_pipeline.telemetry.run_query` (a new DuckDB connection
each time: views created, the store's shared lock held), and the median is reported.

``ingest_rows_s`` = rows / seconds spent inside the writer (generation not counted);
``query_s`` = median wall time of the query. Prints
``P5 query_s=X ingest_rows_s=Y rows=... files=... runs=5 times=...``.
"""

from __future__ import annotations

import statistics
import sys
import time

from support import bench_home

from wf_pipeline.service import synth_telemetry
from wf_pipeline.telemetry import run_query

ROWS = 10_000_000
DAYS = 30
RUNS = 5
TOP = 20

# "Growing": the slope of a key's accepted bytes per day (least squares over the days it
# was written), largest first.
TOP_GROWING_KEYS = f"""
WITH daily AS (
    SELECT key, day, sum(bytes) AS bytes FROM key_growth WHERE source = 'metadata_writes' GROUP BY key, day
)
SELECT key, regr_slope(bytes, epoch(day) / 86400) AS bytes_per_day, sum(bytes) AS bytes
FROM daily
GROUP BY key
ORDER BY bytes_per_day DESC
LIMIT {TOP}
"""


def main(rows: int = ROWS) -> tuple[float, int]:
    with bench_home(latency_ms=0) as home:
        settings = home.settings
        written = synth_telemetry(settings, rows, DAYS)
        times = []
        result: list = []
        for _ in range(RUNS):
            started = time.perf_counter()
            _, result = run_query(settings, TOP_GROWING_KEYS)
            times.append(time.perf_counter() - started)
        if len(result) != TOP:
            raise SystemExit(f"P5: the query returned {len(result)} keys, not {TOP}")
    query_s = statistics.median(times)
    print(
        f"P5 query_s={query_s:.3f} ingest_rows_s={written['rows_per_s']} rows={written['rows']} "
        f"files={written['files']} runs={RUNS} times={'/'.join(f'{t:.2f}' for t in times)}",
        flush=True,
    )
    return query_s, written["rows_per_s"]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROWS)
