"""P1: orchestration overhead of `run_workflow` over a plain loop doing the same turns.

Both sides document the same generated 300-directory tree with the zero-latency
simulated provider, each in a fresh home with the SQLite record store and the local CAS:

- ours: `run_workflow` (scan, plan, partitions, one Dagster run per depth level with
  the turns as asset steps, materializations per partition, gate checks, READMEs
  written at the end);
- loop: the same runtime functions called directly, no Dagster: `plan_run`, then for
  every thread bottom-up `open_thread` and `run_turn` for each turn in order (the same
  CAS objects, turn/gate/link/frame records), then `summarize_run` writing the READMEs.

Runs three loop/ours pairs back to back and prints the median of their ratios:
`P1 ratio=<median ours/loop> ours_s=... loop_s=... pairs=3 ratios=...`.

The cost of telemetry: each pair's run of ours (``WF_TELEMETRY=1``, the default) is
followed by the same run with ``WF_TELEMETRY=0``; the line
`P1 telemetry_cost=<median on/off - 1> on_s=... off_s=... ratios=...` gives the extra
wall time as a fraction (0.05 is 5%).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from support import (
    DIRECTORIES,
    FANOUT,
    REPO_ROOT,
    WORKFLOW_ID,
    bench_home,
    check_complete,
    make_tree,
    require_simulated_provider,
    timed,
    warm_up,
)

from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime import (
    RunSummary,
    RuntimeEnv,
    ThreadIdentity,
    plan_run,
    plan_thread,
    run_turn,
    scan_workspace,
    summarize_run,
    target_depth,
)
from wf_pipeline.service import run_workflow
from wf_pipeline.tree import check_root
from wf_pipeline.workflows import load_builtin_workflows

PAIRS = 3


@dataclass(frozen=True)
class Measurement:
    seconds: float
    threads: int
    dagster_runs: int = 0
    # Directory path -> README text, read after the clock stopped (P2 checks both sides agree).
    readmes: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def per_thread_s(self) -> float:
        return self.seconds / self.threads


def measure_ours(
    directories: int = DIRECTORIES, fanout: int = FANOUT, *, telemetry: bool = True
) -> Measurement:
    with bench_home(latency_ms=0, telemetry=telemetry) as home:
        tree = make_tree(home.root, directories=directories, fanout=fanout)
        summary, seconds = timed(
            lambda: run_workflow(home.settings, WORKFLOW_ID, tree, workspace_dir=REPO_ROOT)
        )
        check_complete(summary, directories, "ours")
        readmes = written_readmes(summary)
    return Measurement(seconds, len(summary.threads), len(summary.dagster_run_ids), readmes)


def written_readmes(summary: RunSummary) -> dict[str, str]:
    return {t.path: Path(t.output_path).read_text() for t in summary.threads if t.output_path}


def check_same_readmes(first: Measurement, second: Measurement, what: str) -> None:
    """Timings only compare when both sides produced the same READMEs for the same directories."""
    differing = sorted(path for path in first.readmes if first.readmes[path] != second.readmes.get(path))
    if differing or first.readmes.keys() != second.readmes.keys():
        raise SystemExit(f"{what}: READMEs differ between the two sides (first: {differing[:3]})")


def plain_loop(settings, tree) -> RunSummary:
    """Every thread bottom-up, every turn in order, straight through the runtime."""
    load_builtin_workflows()
    check_root(tree)
    env = RuntimeEnv.open(settings, workspace_dir=REPO_ROOT)
    loaded = env.catalog.get(WORKFLOW_ID)
    started = now_ms()
    scan = scan_workspace(env, loaded, tree)
    plan = plan_run(env, loaded, scan)
    turn_ids = [turn.turn_id for turn in loaded.profile.ordered_turns()]
    identity, depth = None, None
    for entry in plan.threads:  # deepest directories first
        # A parent's thread id holds its children's outputs: plan it once they have run,
        # with one identity per depth level, as the Dagster side does per level.
        if depth != target_depth(entry.target):
            depth, identity = target_depth(entry.target), ThreadIdentity(env, loaded, scan)
        planned = plan_thread(env, loaded, entry.target, identity)
        if planned.reusable:
            continue
        thread = planned.save_if_new(env)
        for turn_id in turn_ids:
            outcome = run_turn(env, loaded, thread, entry.target, turn_id, scan)
            if outcome.status != "completed" or not outcome.gate_passed:
                break
    return summarize_run(
        env,
        plan,
        started_ms=started,
        dagster_run_ids=(),
    )


def measure_loop(directories: int = DIRECTORIES, fanout: int = FANOUT) -> Measurement:
    with bench_home(latency_ms=0) as home:
        tree = make_tree(home.root, directories=directories, fanout=fanout)
        summary, seconds = timed(lambda: plain_loop(home.settings, tree))
        check_complete(summary, directories, "loop")
        readmes = written_readmes(summary)
    return Measurement(seconds, len(summary.threads), readmes=readmes)


def report(pairs: list[tuple[Measurement, Measurement]]) -> str:
    """The median of the pairs' ratios; disk latency here varies between runs, a pair shares it."""
    ratios = [ours.seconds / loop.seconds for loop, ours in pairs]
    ours_s = statistics.median(ours.seconds for _, ours in pairs)
    loop_s = statistics.median(loop.seconds for loop, _ in pairs)
    _, ours = pairs[0]
    return (
        f"P1 ratio={statistics.median(ratios):.2f} ours_s={ours_s:.2f} loop_s={loop_s:.2f} "
        f"pairs={len(pairs)} ratios={'/'.join(f'{r:.2f}' for r in ratios)} "
        f"threads={ours.threads} fanout={FANOUT} dagster_runs={ours.dagster_runs}"
    )


def telemetry_report(on: list[Measurement], off: list[Measurement]) -> str:
    """The median of on/off ratios minus one: what telemetry adds to a run's wall time."""
    ratios = [with_it.seconds / without.seconds for with_it, without in zip(on, off)]
    return (
        f"P1 telemetry_cost={statistics.median(ratios) - 1:.3f} "
        f"on_s={statistics.median(m.seconds for m in on):.2f} off_s={statistics.median(m.seconds for m in off):.2f} "
        f"pairs={len(ratios)} ratios={'/'.join(f'{r:.3f}' for r in ratios)}"
    )


def main() -> Measurement:
    require_simulated_provider()
    warm_up()
    pairs = []
    without_telemetry = []
    for _ in range(PAIRS):
        pairs.append((measure_loop(), measure_ours()))
        without_telemetry.append(measure_ours(telemetry=False))
    for loop, ours in pairs:
        check_same_readmes(ours, loop, "P1")
    print(report(pairs), flush=True)
    print(telemetry_report([ours for _, ours in pairs], without_telemetry), flush=True)
    # P2 compares against the run of ours with the median time.
    return sorted((ours for _, ours in pairs), key=lambda m: m.seconds)[len(pairs) // 2]


if __name__ == "__main__":
    main()
