"""Agents: which workflow runs on which target of a tree, by an explicit selection policy.

An agent (``<layer>/agents/*.yaml``) has an id, a role, a provider and bindings. Each
binding names a workflow, the kind of target it can take, a priority and whether it is
the default. Target kinds:

- ``root``: the tree's root directory only;
- ``directory``: every directory but the root;
- ``{glob: PATTERN}``: every directory (the root included) directly holding a file whose
  name matches ``PATTERN`` (`fnmatch` syntax, case-sensitive, a file name: no ``/``).

For each target, the binding of highest priority among those that match is selected; a
target no binding matches takes the default binding's workflow. Two bindings of one
priority that can match one target are refused at load (`ambiguous_pairs`), so the
selection never has to break a tie. docs/specs/chained-workflows-and-agents.md.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wf_pipeline.errors import AGENT_BAD_GLOB, ProfileError

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]*$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
ROOT_PATH = "."


class _Frozen(BaseModel):
    # Strict and closed, as profiles are: a wrong type or an unknown key is a load error.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class GlobTarget(_Frozen):
    """A ``{glob: PATTERN}`` target kind: directories directly holding a file named like ``PATTERN``."""

    glob: str


TargetKind = Literal["root", "directory"] | GlobTarget


class Binding(_Frozen):
    """One workflow an agent may run: on which targets, with which priority, and whether it is the default.

    Attributes:
        workflow: a loaded workflow id (``AGENT_UNKNOWN_WORKFLOW`` otherwise).
        target: ``root``, ``directory`` or ``{glob: PATTERN}``.
        priority: higher wins among matching bindings; equal priorities must not overlap.
        default: the binding for targets no binding matches; exactly one per agent.
    """

    workflow: Identifier
    target: TargetKind
    priority: int = 0
    default: bool = False

    @property
    def kind(self) -> str:
        """``root``, ``directory`` or ``glob:<pattern>``, for messages and reports."""
        return f"glob:{self.target.glob}" if isinstance(self.target, GlobTarget) else self.target


class Agent(_Frozen):
    """One agent declaration (docs/specs/chained-workflows-and-agents.md).

    Attributes:
        agent_id: the agent's id, unique per layer (``AGENT_DUPLICATE_ID``).
        role: what the agent is for, one line for listings.
        provider: the provider its runs use (a registered provider name); None: the configured one.
        bindings: the workflows it runs, at least one.
    """

    agent_id: Identifier
    role: Annotated[str, Field(min_length=1)]
    provider: str | None = None
    bindings: list[Binding] = Field(min_length=1)

    def default_binding(self) -> Binding:
        """The binding marked ``default: true`` (the loader checked there is exactly one)."""
        return next(binding for binding in self.bindings if binding.default)


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is no usable file-name glob, or None when it is.

    Refused: empty, holding ``/`` (a target glob matches file names, not paths), or a
    ``[`` that no ``]`` closes (fnmatch would silently match it literally).
    """
    if not pattern:
        return "the pattern is empty"
    if "/" in pattern:
        return "the pattern holds '/': it matches file names, not paths"
    depth = 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        return "a '[' is never closed"
    return None


def check_glob(agent_id: str, binding: Binding, where: Mapping[str, str]) -> None:
    """Refuse a binding whose glob `glob_problem` refuses.

    Raises:
        ProfileError: ``AGENT_BAD_GLOB`` (figures: agent_id, workflow, glob, reason).
    """
    if not isinstance(binding.target, GlobTarget):
        return
    reason = glob_problem(binding.target.glob)
    if reason is not None:
        raise ProfileError(
            AGENT_BAD_GLOB,
            f"{where.get('path', agent_id)}: agent {agent_id} binding {binding.workflow}: "
            f"glob {binding.target.glob!r}: {reason}",
            **where,
            agent_id=agent_id,
            workflow=binding.workflow,
            glob=binding.target.glob,
            reason=reason,
        )


def may_overlap(first: Binding, second: Binding) -> bool:
    """Whether some target of some tree could match both bindings.

    ``root`` and ``directory`` never meet (the root is no ``directory`` target); any other
    pair can: a glob matches the root or any directory, and one kind meets itself.
    """
    kinds = {first.kind, second.kind}
    return kinds != {"root", "directory"}


def ambiguous_pairs(agent: Agent) -> list[tuple[Binding, Binding]]:
    """Pairs of bindings with one priority that `may_overlap`: a selection that would need a tie-break."""
    pairs = []
    for index, first in enumerate(agent.bindings):
        for second in agent.bindings[index + 1 :]:
            if first.priority == second.priority and may_overlap(first, second):
                pairs.append((first, second))
    return pairs


def matches(binding: Binding, path: str, file_names: Iterable[str]) -> bool:
    """Whether the target directory ``path`` (``.`` for the root), holding ``file_names``, matches ``binding``."""
    if binding.target == "root":
        return path == ROOT_PATH
    if binding.target == "directory":
        return path != ROOT_PATH
    return any(fnmatch.fnmatchcase(name, binding.target.glob) for name in file_names)


def select(agent: Agent, path: str, file_names: Iterable[str]) -> Binding:
    """The binding the agent's policy selects for one target.

    Args:
        agent: a loaded agent (no ambiguous pair, one default).
        path: the target directory relative to the tree root, ``.`` for the root.
        file_names: the names of the files directly in it.

    Returns:
        The matching binding of highest priority, else the default binding. Raises nothing.
    """
    names = list(file_names)
    matching = [binding for binding in agent.bindings if matches(binding, path, names)]
    if not matching:
        return agent.default_binding()
    return max(matching, key=lambda binding: binding.priority)


@dataclass(frozen=True)
class AgentPlan:
    """Which targets each bound workflow gets on one tree.

    Attributes:
        agent_id: the agent.
        by_workflow: workflow id -> its target paths in the order given (bottom-up when
            the caller gave them so); only workflows with at least one target, in binding order.
    """

    agent_id: str
    by_workflow: dict[str, tuple[str, ...]]

    def to_json(self) -> dict[str, object]:
        """``{"agent_id", "workflows": {workflow_id: [paths]}}``."""
        return {"agent_id": self.agent_id, "workflows": {k: list(v) for k, v in self.by_workflow.items()}}


def plan_agent(agent: Agent, targets: Iterable[tuple[str, Iterable[str]]]) -> AgentPlan:
    """Split a tree's targets among the agent's workflows by `select`.

    Args:
        agent: a loaded agent.
        targets: (target path, names of the files directly in it), in the order to keep.

    Returns:
        The `AgentPlan`. Raises nothing.
    """
    chosen: dict[str, list[str]] = {binding.workflow: [] for binding in agent.bindings}
    for path, names in targets:
        chosen[select(agent, path, names).workflow].append(path)
    return AgentPlan(agent.agent_id, {wid: tuple(paths) for wid, paths in chosen.items() if paths})
