"""``wf migrate``: the threads on older versions of a workflow, what re-running them costs, and the re-run.

`migrate_workflow` lists the newest thread of each target whose code version is not the
workflow's current one (`wf_pipeline.runtime.migration`), counts per thread the turns whose
request changes and, over all, the turns that will call the provider and those answered
from recorded responses. With ``apply`` it then launches the re-runs as a backfill of each
tree those targets belong to (`wf_pipeline.service.runs.backfill`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wf_pipeline.providers import Provider
from wf_pipeline.runtime import RunSummary, RuntimeEnv
from wf_pipeline.runtime.migration import ThreadMigration, plan_migration
from wf_pipeline.service.runs import _catalog, _check_launchable, backfill
from wf_pipeline.settings import Settings


@dataclass(frozen=True)
class MigrationReport:
    """What ``wf migrate`` found (and, applied, launched).

    Attributes:
        workflow_id: the workflow.
        code_version: its current code version.
        threads: the outdated threads (`ThreadMigration`), by target path.
        applied: whether the re-runs were launched.
        runs: per tree re-run: its root and the backfill's `RunSummary`.
        missing_roots: tree roots of outdated threads that are no longer on this machine
            (not re-run).
    """

    workflow_id: str
    code_version: str
    threads: tuple[ThreadMigration, ...]
    applied: bool = False
    runs: tuple[tuple[str, RunSummary], ...] = field(default=())
    missing_roots: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """``{"workflow_id", "code_version", "applied", "threads": [{"thread_id", "target",
        "path", "root", "status", "pinned_code_version", "current_code_version",
        "turns_changing", "turns_total", "provider_calls", "answered", "turns": [...]}],
        "totals": {"threads", "turns", "turns_changing", "provider_calls", "answered"},
        "runs": [{"root", "dagster_run_ids", "provider_calls", "threads", "failed"}],
        "missing_roots"}``; ids and digests only."""
        threads = [
            {
                "thread_id": m.thread.thread_id,
                "target": m.thread.target_key,
                "path": m.thread.target_path,
                "root": str(m.target.root) if m.target else None,
                "status": m.thread.status,
                "pinned_code_version": m.pinned_code_version,
                "current_code_version": m.current_code_version,
                "turns_changing": m.turns_changing,
                "turns_total": len(m.turns),
                "provider_calls": m.provider_calls,
                "answered": m.answered,
                "turns": [turn.to_json() for turn in m.turns],
            }
            for m in self.threads
        ]
        return {
            "workflow_id": self.workflow_id,
            "code_version": self.code_version,
            "applied": self.applied,
            "threads": threads,
            "totals": {
                "threads": len(self.threads),
                "turns": sum(len(m.turns) for m in self.threads),
                "turns_changing": sum(m.turns_changing for m in self.threads),
                "provider_calls": sum(m.provider_calls for m in self.threads),
                "answered": sum(m.answered for m in self.threads),
            },
            "runs": [
                {
                    "root": root,
                    "dagster_run_ids": list(summary.dagster_run_ids),
                    "provider_calls": summary.provider_calls,
                    "threads": len(summary.threads),
                    "failed": sum(1 for t in summary.threads if t.status == "failed"),
                }
                for root, summary in self.runs
            ],
            "missing_roots": list(self.missing_roots),
        }


def migrate_workflow(
    settings: Settings,
    workflow_id: str,
    *,
    apply: bool = False,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Plan (and with ``apply`` launch) the re-run of ``workflow_id``'s threads on older code versions.

    Args:
        settings: the settings to work under.
        workflow_id: the workflow.
        apply: launch the re-runs: one backfill per tree the outdated threads' targets
            belong to (`backfill`); every pending thread of such a tree runs, under the
            current profile, each turn taking a recorded response when its request was
            answered before (``WF_REUSE_RESPONSES``).
        workspace_dir: the workspace profile layer (default: the working directory).
        provider: replaces the configured provider (in-process executor only); it also
            names the provider part of the requests compared.
        on_progress: ``(done, total)`` threads of each backfill.

    Returns:
        The `MigrationReport`. The plan reads the records and the CAS and writes nothing.

    Raises:
        WfError: ``PROFILE_*`` for an unknown workflow; ``RECORD_UNAVAILABLE``; with
            ``apply``, ``RUN_PROVIDER_NOT_PORTABLE`` and the executor's ``CONFIG_*`` errors
            (before anything runs) and the errors of `backfill`.
    """
    if apply:
        _check_launchable(settings, provider)
    catalog = _catalog(settings, workspace_dir)
    current = catalog.get(workflow_id)
    with RuntimeEnv.open(settings, catalog=catalog, provider=provider) as env:
        migrations = tuple(plan_migration(env, current))
    report = MigrationReport(workflow_id, current.code_version, migrations)
    if not apply:
        return report
    roots = sorted({str(m.target.root) for m in migrations if m.target is not None})
    runs, missing = [], []
    for root in roots:
        if not Path(root).is_dir():
            missing.append(root)  # the tree is gone from this machine: nothing to re-run
            continue
        summary = backfill(
            settings,
            workflow_id,
            Path(root),
            workspace_dir=workspace_dir,
            provider=provider,
            on_progress=on_progress,
        )
        runs.append((root, summary))
    return MigrationReport(
        workflow_id,
        current.code_version,
        migrations,
        applied=True,
        runs=tuple(runs),
        missing_roots=tuple(missing),
    )
