"""P3: wall time with a slow provider, against the ideal of perfectly packed concurrent calls.

300 directories x 4 turns, 200 ms per simulated provider call, 16 concurrent calls, our
full `run_workflow`. The ideal packs all 1200 calls on 16 workers: 300 * 4 * 0.2 / 16 s.

Bottom-up order makes each depth level wait for the level below, and inside a level each
turn waits for the whole level's previous turn (one asset step per turn), so no schedule
of this tree beats the structural bound: the sum over levels and turns of
ceil(n_level / 16) * 0.2 s. It is printed too, to separate the tree's shape from our
overhead. Prints `P3 ratio=<wall/ideal> wall_s=... ideal_s=... bound_s=... levels=... runs=...`.
"""

from __future__ import annotations

from support import (
    DIRECTORIES,
    FANOUT,
    REPO_ROOT,
    TURN_IDS,
    WORKFLOW_ID,
    bench_home,
    check_complete,
    level_sizes_of,
    make_tree,
    require_simulated_provider,
    structural_bound_s,
    timed,
    warm_up,
)

from wf_pipeline.service import run_workflow

LATENCY_MS = 200
CONCURRENCY = 16


def main() -> None:
    require_simulated_provider()
    warm_up()
    latency_s = LATENCY_MS / 1000
    with bench_home(latency_ms=LATENCY_MS, concurrency=CONCURRENCY) as home:
        tree = make_tree(home.root)
        sizes = level_sizes_of(tree)
        summary, wall = timed(lambda: run_workflow(home.settings, WORKFLOW_ID, tree, workspace_dir=REPO_ROOT))
    check_complete(summary, DIRECTORIES, "P3")
    ideal = DIRECTORIES * len(TURN_IDS) * latency_s / CONCURRENCY
    bound = structural_bound_s(sizes, turns=len(TURN_IDS), latency_s=latency_s, concurrency=CONCURRENCY)
    print(
        f"P3 ratio={wall / ideal:.2f} wall_s={wall:.2f} ideal_s={ideal:.1f} bound_s={bound:.1f} "
        f"bound_ratio={bound / ideal:.2f} overhead_s={wall - bound:.2f} "
        f"levels={'/'.join(map(str, sizes))} runs={len(summary.dagster_run_ids)} fanout={FANOUT}",
        flush=True,
    )


if __name__ == "__main__":
    main()
