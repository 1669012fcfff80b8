"""P10: what a verified replay and a re-run after a template edit cost, against the original run.

A 100-directory tree is documented by `run_workflow` with a simulated provider of 50 ms a
call. Then, in the same process and home:

- `replay(tree, verify=True)` re-executes every thread from the recorded answers in a
  scratch namespace and compares every digest;
- the last turn's template is edited in a workspace layer and the tree is run again: the
  first three turns take their recorded answers, only the last calls the provider.

Prints `P10 replay_s=… run_s=… replay_ratio=… rerun_s=… rerun_ratio=… rerun_calls=… provider_calls=… divergences=…`:
the ratios are each phase's wall time over the original run's; `rerun_calls` over
`provider_calls` is the share of calls a template edit of the last turn costs (0.25 for four turns).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support import REPO_ROOT, WORKFLOW_ID, bench_home, make_tree, require_simulated_provider, timed

from wf_pipeline.service import run_workflow
from wf_pipeline.service.replay import replay

DIRECTORIES = 100
LATENCY_MS = 50


def _edited_workspace(parent: Path) -> Path:
    workspace = parent / "workspace"
    (workspace / "profiles").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "profiles" / f"{WORKFLOW_ID}.yaml", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    template = workspace / "assets" / "prompts" / "docs_writer" / "style_refine.md"
    template.write_text(template.read_text() + "\nKeep every sentence short.\n")
    return workspace


def main() -> dict[str, float]:
    """Run P10 and print its line; returns the figures (seconds, ratios, counts)."""
    require_simulated_provider()
    with bench_home(latency_ms=LATENCY_MS) as home:
        tree = make_tree(home.root, directories=DIRECTORIES)
        settings = home.settings
        run, run_s = timed(lambda: run_workflow(settings, WORKFLOW_ID, tree, workspace_dir=REPO_ROOT))
        report, replay_s = timed(lambda: replay(settings, tree=tree, verify=True, workspace_dir=REPO_ROOT))
        workspace = _edited_workspace(home.root)
        rerun, rerun_s = timed(lambda: run_workflow(settings, WORKFLOW_ID, tree, workspace_dir=workspace))
    figures = {
        "replay_s": replay_s,
        "run_s": run_s,
        "replay_ratio": replay_s / run_s,
        "rerun_s": rerun_s,
        "rerun_ratio": rerun_s / run_s,
        "rerun_calls": rerun.provider_calls,
        "provider_calls": run.provider_calls,
        "divergences": sum(len(t.divergences) for t in report.threads),
    }
    print(
        f"P10 replay_s={replay_s:.2f} run_s={run_s:.2f} replay_ratio={figures['replay_ratio']:.2f} "
        f"rerun_s={rerun_s:.2f} rerun_ratio={figures['rerun_ratio']:.2f} rerun_calls={rerun.provider_calls} "
        f"provider_calls={run.provider_calls} divergences={figures['divergences']}",
        flush=True,
    )
    return figures


if __name__ == "__main__":
    main()
