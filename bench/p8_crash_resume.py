"""P8: provider calls repeated for turns that had already completed, across crashes.

`wf run` runs as a real process on a 40-directory tree with a 30 ms simulated provider.
It is SIGKILLed at a few random moments (after a random number of new turn records, plus
a random delay), then resumed with plain `wf run` until a run finishes. Afterwards every
turn record with provider_called whose attempt started after a completed record of the
same (thread, turn) had ended counts as a repeated call.

While a run is alive the harness only reads the record database in SQLite's read-only
mode, so watching changes nothing the run or the next one sees.
Prints `P8 repeated_calls=N kills=K runs=R provider_calls=C`.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from support import (
    REPO_ROOT,
    TURN_IDS,
    WORKFLOW_ID,
    BenchHome,
    bench_home,
    make_tree,
    require_simulated_provider,
    subprocess_environment,
)

from wf_pipeline.records import open_record_store

DIRECTORIES = 40
LATENCY_MS = 30
KILLS = 4
SEED = 8
POLL_S = 0.005
RUN_TIMEOUT_S = 300
MAX_RESUMES = 5
WF = REPO_ROOT / ".venv" / "bin" / "wf"


def start_run(home: BenchHome, tree: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(WF), "run", WORKFLOW_ID, str(tree), "--json"],
        cwd=REPO_ROOT,
        env=subprocess_environment(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Its own process group, so the kill also reaches anything it started.
        start_new_session=True,
    )


def turn_records(records_db: Path) -> int:
    """Turn records committed so far (0 before the database or its tables exist)."""
    if not records_db.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{records_db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return connection.execute("SELECT count(*) FROM wf_turns").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        connection.close()


def kill_after_records(process: subprocess.Popen, records_db: Path, more: int, delay_s: float) -> bool:
    """SIGKILL the run once ``more`` turn records were added, ``delay_s`` later; True if it was alive."""
    start = turn_records(records_db)
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
        if turn_records(records_db) >= start + more:
            time.sleep(delay_s)
            break
        time.sleep(POLL_S)
    alive = process.poll() is None
    if alive:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=RUN_TIMEOUT_S)
    return alive


def run_to_end(process: subprocess.Popen) -> int:
    _stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    if process.returncode not in (0, 1):
        raise SystemExit(f"P8: wf run exited with {process.returncode}: {stderr.decode()[-400:]}")
    return process.returncode


def count_calls(records_url: str) -> tuple[int, int, set[str]]:
    """Provider calls made after the same turn had completed, all provider calls, thread states."""
    store = open_record_store(records_url)
    repeated = total = 0
    try:
        threads = store.list_threads(WORKFLOW_ID)
        for thread in threads:
            by_turn = defaultdict(list)
            for record in store.turns_for_thread(thread.thread_id):
                by_turn[record.turn_id].append(record)
            for records in by_turn.values():
                completed_ends = [
                    r.ended_at_ms for r in records if r.status == "completed" and r.ended_at_ms is not None
                ]
                first_completed = min(completed_ends, default=None)
                for record in records:
                    if not record.provider_called:
                        continue
                    total += 1
                    if first_completed is not None and record.started_at_ms > first_completed:
                        repeated += 1
    finally:
        store.close()
    return repeated, total, {thread.status for thread in threads}


def main() -> None:
    require_simulated_provider()
    rng = random.Random(SEED)
    total_records = DIRECTORIES * len(TURN_IDS)
    with bench_home(latency_ms=LATENCY_MS) as home:
        tree = make_tree(home.root, directories=DIRECTORIES)
        records_db = home.settings.home / "records.db"
        kills = runs = 0
        for _ in range(KILLS):
            more = rng.randint(1, total_records // KILLS)
            delay_s = rng.uniform(0.0, 2 * LATENCY_MS / 1000)
            runs += 1
            kills += kill_after_records(start_run(home, tree), records_db, more, delay_s)
        for _ in range(MAX_RESUMES):
            runs += 1
            if run_to_end(start_run(home, tree)) == 0:
                break
        else:
            raise SystemExit(f"P8: the tree was not finished after {MAX_RESUMES} resumed runs")
        repeated, total, states = count_calls(home.records_url)
    if states != {"completed"}:
        raise SystemExit(f"P8: threads left in states {sorted(states)}")
    print(f"P8 repeated_calls={repeated} kills={kills} runs={runs} provider_calls={total}", flush=True)


if __name__ == "__main__":
    main()
