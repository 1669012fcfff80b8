"""The activation graph: which workflow starts which, under which condition (``activates:``).

A profile's ``activates:`` lists ``{workflow, when, target}`` entries. Each entry is
checked on its own when its file loads (`check_activation_entries`), and the whole graph
when the catalog is assembled (`catalog_activation_problems`): an entry naming a workflow
no loaded profile defines, and every profile on a cycle, fail to load with their own
codes. The compiler turns the graph into Dagster sensors (`wf_pipeline.compiler.sensors`);
``wf workflows graph`` prints it (`activation_graph`). docs/specs/chained-workflows-and-agents.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wf_pipeline.errors import (
    PROFILE_ACTIVATION_BAD_TARGET,
    PROFILE_ACTIVATION_CYCLE,
    PROFILE_ACTIVATION_DUPLICATE,
    PROFILE_ACTIVATION_UNKNOWN_CONDITION,
    PROFILE_ACTIVATION_UNKNOWN_WORKFLOW,
    ProfileError,
)
from wf_pipeline.profiles.schema import Profile

#: Every thread of the upstream workflow on a tree (one per documentable directory, for the
#: tree's current content) has completed. Evaluated by `wf_pipeline.runtime.activations`.
ALL_THREADS_COMPLETED = "all_threads_completed"
#: The conditions an activation may name, with what each means.
CONDITIONS: Mapping[str, str] = {
    ALL_THREADS_COMPLETED: "every thread of the workflow on a tree has completed",
}
#: The targets an activated workflow may run on.
TARGETS = ("root",)


@dataclass(frozen=True)
class ActivationEdge:
    """One edge of the activation graph: ``source`` starts ``target`` on ``on`` when ``condition`` holds."""

    source: str
    target: str
    condition: str
    on: str

    def to_json(self) -> dict[str, str]:
        """``{"from", "to", "when", "target"}``."""
        return {"from": self.source, "to": self.target, "when": self.condition, "target": self.on}


def check_activation_entries(profile: Profile, where: dict[str, str]) -> None:
    """Check each ``activates:`` entry of one profile on its own (the catalog checks the rest).

    Args:
        profile: the parsed profile.
        where: ``{"path", "workflow_id"}`` figures every error carries.

    Raises:
        ProfileError: ``PROFILE_ACTIVATION_UNKNOWN_CONDITION`` (figures: workflow, when,
            known), ``PROFILE_ACTIVATION_BAD_TARGET`` (figures: workflow, target, known),
            ``PROFILE_ACTIVATION_DUPLICATE`` (figure: workflow) for the first bad entry.
    """
    seen: set[str] = set()
    for entry in profile.activates:
        if entry.when not in CONDITIONS:
            raise ProfileError(
                PROFILE_ACTIVATION_UNKNOWN_CONDITION,
                f"{where['path']}: activates {entry.workflow}: unknown condition {entry.when!r}; "
                f"known: {sorted(CONDITIONS)}",
                **where,
                workflow=entry.workflow,
                when=entry.when,
                known=sorted(CONDITIONS),
            )
        if entry.target not in TARGETS:
            raise ProfileError(
                PROFILE_ACTIVATION_BAD_TARGET,
                f"{where['path']}: activates {entry.workflow}: target {entry.target!r} is not one of {list(TARGETS)}",
                **where,
                workflow=entry.workflow,
                target=entry.target,
                known=list(TARGETS),
            )
        if entry.workflow in seen:
            raise ProfileError(
                PROFILE_ACTIVATION_DUPLICATE,
                f"{where['path']}: activates {entry.workflow!r} twice",
                **where,
                workflow=entry.workflow,
            )
        seen.add(entry.workflow)


def activation_edges(profiles: Mapping[str, Profile]) -> list[ActivationEdge]:
    """Every activation of ``profiles`` (workflow id -> profile), by source then target."""
    return sorted(
        (
            ActivationEdge(source, entry.workflow, entry.when, entry.target)
            for source, profile in profiles.items()
            for entry in profile.activates
        ),
        key=lambda edge: (edge.source, edge.target),
    )


def find_cycle(edges: list[ActivationEdge]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, the first found in id order; None when it has none."""
    following: dict[str, list[str]] = {}
    for edge in edges:
        following.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(following):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(following.get(start, ()))]
        state[start] = 1
        # Iterative depth-first search: activation chains are short, but recursion needs no limit here.
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(following.get(nxt, ())))
    return None


def catalog_activation_problems(
    profiles: Mapping[str, Profile], paths: Mapping[str, str]
) -> dict[str, ProfileError]:
    """The profiles whose activations cannot load with the others: workflow id -> why.

    An entry naming a workflow ``profiles`` does not define fails its profile with
    ``PROFILE_ACTIVATION_UNKNOWN_WORKFLOW`` (figures: workflow, known). Then each cycle
    fails every profile on it with ``PROFILE_ACTIVATION_CYCLE`` (figure: cycle, the
    workflow ids in order, first repeated last). Dropping a profile may leave another's
    entry naming it, so both checks repeat until nothing changes.

    Args:
        profiles: workflow id -> profile, the catalog's winners.
        paths: workflow id -> its file, for the messages.

    Returns:
        workflow id -> the `ProfileError`; empty when the graph is sound. Raises nothing.
    """
    problems: dict[str, ProfileError] = {}
    while True:
        alive = {wid: profile for wid, profile in profiles.items() if wid not in problems}
        before = len(problems)
        for wid, profile in alive.items():
            for entry in profile.activates:
                if entry.workflow not in alive:
                    problems[wid] = ProfileError(
                        PROFILE_ACTIVATION_UNKNOWN_WORKFLOW,
                        f"{paths.get(wid, wid)}: activates {entry.workflow!r}, which no loaded profile defines",
                        path=paths.get(wid),
                        workflow_id=wid,
                        workflow=entry.workflow,
                        known=sorted(alive),
                    )
                    break
        if len(problems) == before:
            alive = {wid: profile for wid, profile in profiles.items() if wid not in problems}
            cycle = find_cycle(activation_edges(alive))
            if cycle is None:
                return problems
            for wid in cycle[:-1]:
                problems[wid] = ProfileError(
                    PROFILE_ACTIVATION_CYCLE,
                    f"{paths.get(wid, wid)}: activation cycle {' -> '.join(cycle)}",
                    path=paths.get(wid),
                    workflow_id=wid,
                    cycle=cycle,
                )


def activation_graph(profiles: Mapping[str, Profile]) -> dict[str, Any]:
    """The activation graph as data: ``{"nodes": [workflow ids], "edges": [ActivationEdge.to_json()]}``.

    Args:
        profiles: workflow id -> profile (a loaded catalog's: sound, checked at load).

    Returns:
        Nodes in id order, edges by source then target. Raises nothing.
    """
    return {
        "nodes": sorted(profiles),
        "edges": [edge.to_json() for edge in activation_edges(profiles)],
    }


def graph_dot(graph: Mapping[str, Any]) -> str:
    """`activation_graph` as Graphviz DOT text: one node per workflow, one labelled edge per activation."""
    lines = ["digraph activations {"]
    lines += [f'  "{node}";' for node in graph["nodes"]]
    lines += [
        f'  "{edge["from"]}" -> "{edge["to"]}" [label="{edge["when"]} ({edge["target"]})"];'
        for edge in graph["edges"]
    ]
    lines.append("}")
    return "\n".join(lines) + "\n"
