"""Use cases of chained workflows and agents: the activation graph, the agents, ``wf run --agent``.

Plain functions over the profile and agent loaders, the runtime and `run_workflow`; the
CLI formats what they return. docs/specs/chained-workflows-and-agents.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wf_pipeline.agents import AgentCatalog, AgentPlan, load_agents, plan_agent
from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.profiles import ProfileCatalog, default_layers
from wf_pipeline.profiles.activations import activation_graph, graph_dot
from wf_pipeline.providers import Provider
from wf_pipeline.runtime import RunSummary, RuntimeEnv, scan_workspace
from wf_pipeline.runtime.targets import documentable_directories
from wf_pipeline.service.runs import run_workflow
from wf_pipeline.settings import Settings, provider_options
from wf_pipeline.tree import check_root


def workflow_graph(settings: Settings, workspace_dir: Path | None = None) -> dict[str, Any]:
    """The activation graph of the loaded profiles (`wf_pipeline.profiles.activations.activation_graph`).

    Returns ``{"nodes": [workflow ids], "edges": [{"from", "to", "when", "target"}]}``; a
    profile that failed to load (its activations included) is not in it. Raises the
    loader's ``PROFILE_*`` errors for unreadable layers and ``CONFIG_*`` for bad settings.
    """
    catalog = load_profiles(settings, workspace_dir or Path.cwd(), warn=False)
    return activation_graph({loaded.workflow_id: loaded.profile for loaded in catalog.all()})


def workflow_graph_dot(graph: dict[str, Any]) -> str:
    """`workflow_graph`'s result as Graphviz DOT text (`graph_dot`)."""
    return graph_dot(graph)


def agent_catalog(
    settings: Settings, workspace_dir: Path | None = None, catalog: ProfileCatalog | None = None
) -> AgentCatalog:
    """Every agent of the workspace, user and built-in layers, validated against the loaded profiles.

    ``catalog``: the profiles already loaded (default: loaded here). Raises nothing for a
    bad agent file (it is one of the catalog's problems).
    """
    workspace = workspace_dir or Path.cwd()
    catalog = catalog or load_profiles(settings, workspace, warn=False)
    return load_agents(default_layers(settings, workspace), catalog)


def list_agents(settings: Settings, workspace_dir: Path | None = None) -> dict[str, Any]:
    """``{"agents": [{agent_id, role, provider, layer, source, bindings}], "invalid": [problem dicts]}``.

    Each binding is ``{workflow, target, priority, default}`` (target: ``root``,
    ``directory`` or ``glob:<pattern>``).
    """
    agents = agent_catalog(settings, workspace_dir)
    rows = [
        {
            "agent_id": loaded.agent_id,
            "role": loaded.agent.role,
            "provider": loaded.agent.provider,
            "layer": loaded.layer,
            "source": str(loaded.source_path),
            "bindings": [
                {"workflow": b.workflow, "target": b.kind, "priority": b.priority, "default": b.default}
                for b in loaded.agent.bindings
            ],
        }
        for _, loaded in sorted(agents.agents.items())
    ]
    return {"agents": rows, "invalid": [problem.to_dict() for problem in agents.problems]}


@dataclass(frozen=True)
class AgentRunSummary:
    """What ``wf run --agent`` did: the policy's plan and one `RunSummary` per workflow that had targets.

    Attributes:
        plan: which target paths each workflow got.
        runs: workflow id -> its run's summary, in the order they ran.
    """

    plan: AgentPlan
    runs: dict[str, RunSummary]

    @property
    def ok(self) -> bool:
        """Whether every workflow's run was `RunSummary.ok`."""
        return all(summary.ok for summary in self.runs.values())

    def to_json(self) -> dict[str, Any]:
        """``{"agent_id", "workflows": {id: [paths]}, "runs": [{"workflow_id", "targets", "summary"}]}``."""
        return {
            **self.plan.to_json(),
            "runs": [
                {
                    "workflow_id": workflow_id,
                    "targets": list(self.plan.by_workflow[workflow_id]),
                    "summary": summary.to_json(),
                }
                for workflow_id, summary in self.runs.items()
            ],
        }


def plan_agent_run(
    settings: Settings, agent_id: str, root: Path, *, workspace_dir: Path | None = None
) -> AgentPlan:
    """Which targets of the tree at ``root`` each of the agent's workflows gets (`wf_pipeline.agents.plan_agent`).

    The tree is scanned as its default binding's workflow scans it; its targets are the
    documentable directories, bottom-up. Nothing is written but the scan's node records.

    Raises:
        ProfileError: ``AGENT_NOT_FOUND`` (the agent's file may be one of the problems it names).
        TreeError: ``TREE_*`` for a bad root.
    """
    check_root(root)
    workspace = workspace_dir or Path.cwd()
    catalog = load_profiles(settings, workspace, warn=False)
    agent = agent_catalog(settings, workspace, catalog).get(agent_id).agent
    loaded = catalog.get(agent.default_binding().workflow)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        scan = scan_workspace(env, loaded, root)
    targets = [
        (path, [node.name for node in scan.children_of(path) if node.kind == "file"])
        for path in documentable_directories(scan)
    ]
    return plan_agent(agent, targets)


def _run_order(plan: AgentPlan) -> list[str]:
    # Bottom-up across workflows too: a workflow whose shallowest target is deeper runs first,
    # so the one holding the root runs last, after the directories below it are documented.
    def shallowest(workflow_id: str) -> int:
        return min(0 if p == "." else p.count("/") + 1 for p in plan.by_workflow[workflow_id])

    return sorted(plan.by_workflow, key=lambda wid: -shallowest(wid))


def run_agent(
    settings: Settings,
    agent_id: str,
    root: Path,
    *,
    out_dir: Path | None = None,
    in_place: bool = False,
    overwrite: bool = False,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
) -> AgentRunSummary:
    """Run, for each target of the tree at ``root``, the workflow the agent's policy selects.

    Plans the split (`plan_agent_run`), then runs each workflow on its targets only
    (`run_workflow` with ``only_targets``), the workflow with the deepest targets first.
    The agent's ``provider``, when it names one, replaces ``settings.provider`` (with that
    provider's ``WF_<PROVIDER>_<OPTION>`` options); a ``provider`` object replaces both.

    Returns:
        The `AgentRunSummary`.

    Raises:
        ProfileError: ``AGENT_NOT_FOUND``; and everything `run_workflow` raises.
    """
    workspace = workspace_dir or Path.cwd()
    plan = plan_agent_run(settings, agent_id, root, workspace_dir=workspace)
    agent = agent_catalog(settings, workspace).get(agent_id).agent
    if provider is None and agent.provider is not None and agent.provider != settings.provider:
        settings = settings.model_copy(
            update={
                "provider": agent.provider,
                "provider_options": provider_options(agent.provider, settings.secrets),
            }
        )
    runs: dict[str, RunSummary] = {}
    for workflow_id in _run_order(plan):
        runs[workflow_id] = run_workflow(
            settings,
            workflow_id,
            root,
            out_dir=out_dir,
            in_place=in_place,
            overwrite=overwrite,
            workspace_dir=workspace,
            provider=provider,
            only_targets=plan.by_workflow[workflow_id],
        )
    return AgentRunSummary(plan=plan, runs=runs)
