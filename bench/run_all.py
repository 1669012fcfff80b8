"""All benchmarks in one process, one line each: P1 (and its telemetry cost), P2 (reusing P1's run of ours), P3 to P10."""

from __future__ import annotations

import os

import p1_overhead
import p2_langgraph
import p3_latency
import p4_cas_encrypted
import p5_telemetry
import p6_retention
import p7_rewrap
import p8_crash_resume
import p9_redaction
import p10_replay
from support import require_simulated_provider


def main() -> None:
    require_simulated_provider()
    load1, load5, _ = os.getloadavg()
    # Other work on the machine slows some measurements more than others; say how busy it was.
    print(f"# cpus={os.cpu_count()} load1={load1:.2f} load5={load5:.2f}", flush=True)
    ours = p1_overhead.main()
    p2_langgraph.main(ours)
    p3_latency.main()
    p4_cas_encrypted.main()
    p5_telemetry.main()
    p6_retention.main()
    p7_rewrap.main()
    p8_crash_resume.main()
    p9_redaction.main()
    p10_replay.main()


if __name__ == "__main__":
    main()
