"""P6: a retention sweep over 100,000 expired artifacts, planned and applied, in artifacts per second.

The fixture is written directly (`wf_pipeline.retention.synthetic.write_workload`): 20,000
completed docs-writer threads dated 60 days ago, each with one context snapshot and four
rendered prompts (100,000 artifacts past the built-in docs_family windows: prompt renders
7 days, contexts 30 days) and four outputs (kept forever), in SQLite records and the local
CAS of a fresh WF_HOME. The timed part is `service.retention_apply`: open the runtime,
plan (read every link, apply the windows and safety rules), then per batch commit the
tombstones and delete the objects. Prints `P6 sweep_per_s=X deleted=N seconds=S (...)`:
N is 100,001, the 100,000 per-thread artifacts plus the one system prompt every turn
shares (it expires with the renders, as in a real run), and the line says so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from support import WORKFLOW_ID, bench_home

from wf_pipeline.cas import open_cas
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records import open_record_store
from wf_pipeline.retention.synthetic import write_workload
from wf_pipeline.service.retention import retention_apply

THREADS = 20_000  # x (1 context + 4 renders) = 100,000 expired artifacts
DAY_MS = 86_400_000


def object_writer(cas_root: Path):
    """Write objects straight into the local CAS layout (objects/<2 hex>/<62 hex>), without fsyncs.

    Setting up the fixture is not what P6 measures; the store's own put_many syncs every object.
    """

    def write(objects: list[bytes]) -> None:
        for data in objects:
            hex_digest = digest(data)[len("sha256:") :]
            folder = cas_root / "objects" / hex_digest[:2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / hex_digest[2:]).write_bytes(data)

    return write


def main() -> float:
    with bench_home(latency_ms=0) as home:
        settings = home.settings
        settings.ensure_dirs()
        records = open_record_store(settings.records_url)
        cas = open_cas(settings.cas_url)
        try:
            workload = write_workload(
                records,
                cas,
                workflow_id=WORKFLOW_ID,
                threads=THREADS,
                created_at_ms=now_ms() - 60 * DAY_MS,
                write_objects=object_writer(settings.home / "cas"),
            )
        finally:
            records.close()
            cas.close()
        # Flushed to disk before timing: a sweep deletes old objects, not ones still in writeback.
        os.sync()
        expected = len(workload.contexts) + len(workload.renders) + 1  # + the shared system prompt
        started = time.perf_counter()
        result = retention_apply(settings, workspace_dir=home.root)
        seconds = time.perf_counter() - started
    if result["deleted"] != expected or result["tombstones_written"] != expected:
        raise SystemExit(f"P6 swept {result['deleted']} artifacts, expected {expected}")
    rate = result["deleted"] / seconds
    per_thread = len(workload.contexts) + len(workload.renders)
    shared = result["deleted"] - per_thread
    print(
        f"P6 sweep_per_s={rate:.0f} deleted={result['deleted']} seconds={seconds:.2f} "
        f"({per_thread} per-thread artifacts + {shared} shared system prompt)",
        flush=True,
    )
    return rate


if __name__ == "__main__":
    main()
