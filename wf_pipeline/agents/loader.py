"""Layered agent loading and validation: ``<layer root>/agents/*.yaml``, layered like profiles.

Layers are searched in order workspace, user, built-in (`wf_pipeline.profiles.default_layers`);
the first layer that declares an agent id wins. Every agent file is validated against the
loaded profiles, and a file that fails is one `AgentProblem` (with its ``AGENT_*`` code)
that never hides the other agents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wf_pipeline.agents.policy import Agent, ambiguous_pairs, check_glob
from wf_pipeline.errors import (
    AGENT_AMBIGUOUS_SELECTION,
    AGENT_DUPLICATE_ID,
    AGENT_NO_DEFAULT,
    AGENT_NOT_FOUND,
    AGENT_PARSE_ERROR,
    AGENT_SCHEMA_INVALID,
    AGENT_UNKNOWN_PROVIDER,
    AGENT_UNKNOWN_WORKFLOW,
    ProfileError,
)
from wf_pipeline.metadata.yaml_documents import YamlFileProblem, read_yaml_file
from wf_pipeline.profiles import Layer, ProfileCatalog
from wf_pipeline.profiles.layers import load_layered
from wf_pipeline.providers.base import provider_names

AGENT_DIR = "agents"
AGENT_SUFFIXES = (".yaml", ".yml")


def agent_files(layer: Layer) -> list[Path]:
    """The ``.yaml``/``.yml`` files of the layer's ``agents/`` folder, sorted by path; [] when it has none."""
    directory = layer.root / AGENT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in AGENT_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class LoadedAgent:
    """A validated agent and where it was loaded from."""

    agent: Agent
    layer: str
    source_path: Path

    @property
    def agent_id(self) -> str:
        """The agent's id."""
        return self.agent.agent_id


@dataclass(frozen=True)
class AgentProblem:
    """An agent file that did not load: its path, layer and `ProfileError` (an ``AGENT_*`` code)."""

    path: Path
    layer: str
    error: ProfileError

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "layer", "code", "message"}``."""
        return {
            "path": str(self.path),
            "layer": self.layer,
            "code": self.error.code,
            "message": self.error.message,
        }


@dataclass(frozen=True)
class AgentCatalog:
    """The loaded agents by id and the agent files that failed."""

    agents: dict[str, LoadedAgent]
    problems: tuple[AgentProblem, ...] = field(default=())

    def get(self, agent_id: str) -> LoadedAgent:
        """The agent ``agent_id``.

        Raises:
            ProfileError: ``AGENT_NOT_FOUND`` (figures: agent_id, known, the files that
                failed to load with their codes).
        """
        try:
            return self.agents[agent_id]
        except KeyError:
            failed = [f"{problem.path} ({problem.error.code})" for problem in self.problems]
            raise ProfileError(
                AGENT_NOT_FOUND,
                f"no layer declares agent {agent_id!r}; loaded: {sorted(self.agents) or 'none'}"
                + (f"; {len(failed)} agent file(s) failed to load: {', '.join(failed)}" if failed else ""),
                agent_id=agent_id,
                known=sorted(self.agents),
                failed_files=[str(problem.path) for problem in self.problems],
            ) from None


def load_agents(layers: Iterable[Layer], catalog: ProfileCatalog) -> AgentCatalog:
    """Load and validate every agent file of every layer against ``catalog``; the first layer to declare an id wins.

    Args:
        layers: highest precedence first (`wf_pipeline.profiles.default_layers`).
        catalog: the loaded profiles the bindings must name.

    Returns:
        The `AgentCatalog`; a file that fails is one problem (``AGENT_*`` as
        `load_agent_file`, or ``AGENT_DUPLICATE_ID`` for a second file of one layer
        declaring an id, figures: agent_id, layer, paths). Raises nothing for a bad file.
    """

    def duplicate(path: Path, layer: Layer, earlier: LoadedAgent, loaded: LoadedAgent) -> ProfileError:
        return ProfileError(
            AGENT_DUPLICATE_ID,
            f"{path}: agent {loaded.agent_id!r} is already declared in the {layer.name} "
            f"layer by {earlier.source_path}",
            agent_id=loaded.agent_id,
            layer=layer.name,
            paths=[str(earlier.source_path), str(path)],
        )

    found = load_layered(
        layers,
        agent_files,
        lambda path, layer: load_agent_file(path, layer.name, catalog),
        lambda loaded: loaded.agent_id,
        duplicate,
    )
    winners = found.winners
    problems = [AgentProblem(path, name, exc) for path, name, exc in found.problems]
    return AgentCatalog(agents=winners, problems=tuple(problems))


def load_agent_file(path: Path, layer: str, catalog: ProfileCatalog) -> LoadedAgent:
    """Load and validate one agent file.

    Args:
        path: the agent's YAML file.
        layer: the name of the layer it belongs to.
        catalog: the loaded profiles its bindings must name.

    Returns:
        The `LoadedAgent`.

    Raises:
        ProfileError: ``AGENT_PARSE_ERROR`` (unreadable, not YAML; figure: line),
            ``AGENT_SCHEMA_INVALID`` (figure: fields), ``AGENT_BAD_GLOB``,
            ``AGENT_UNKNOWN_WORKFLOW`` (figures: workflow, known), ``AGENT_UNKNOWN_PROVIDER``
            (figures: provider, known), ``AGENT_NO_DEFAULT`` (figure: defaults, the bindings
            marked default), ``AGENT_AMBIGUOUS_SELECTION`` (figures: workflows, kinds,
            priority of the first pair). Every error carries the file's path.
    """
    agent = _parse(path)
    where = {"path": str(path)}
    for binding in agent.bindings:
        check_glob(agent.agent_id, binding, where)
        if binding.workflow not in catalog.profiles:
            raise ProfileError(
                AGENT_UNKNOWN_WORKFLOW,
                f"{path}: agent {agent.agent_id} binds {binding.workflow!r}, which no loaded profile defines",
                **where,
                agent_id=agent.agent_id,
                workflow=binding.workflow,
                known=sorted(catalog.profiles),
            )
    if agent.provider is not None and agent.provider not in provider_names():
        raise ProfileError(
            AGENT_UNKNOWN_PROVIDER,
            f"{path}: agent {agent.agent_id} names provider {agent.provider!r}; registered: {sorted(provider_names())}",
            **where,
            agent_id=agent.agent_id,
            provider=agent.provider,
            known=sorted(provider_names()),
        )
    defaults = [binding.workflow for binding in agent.bindings if binding.default]
    if len(defaults) != 1:
        raise ProfileError(
            AGENT_NO_DEFAULT,
            f"{path}: agent {agent.agent_id} needs exactly one binding with default: true, has {len(defaults)}"
            + (f" ({', '.join(defaults)})" if defaults else ""),
            **where,
            agent_id=agent.agent_id,
            defaults=defaults,
        )
    pairs = ambiguous_pairs(agent)
    if pairs:
        first, second = pairs[0]
        raise ProfileError(
            AGENT_AMBIGUOUS_SELECTION,
            f"{path}: agent {agent.agent_id}: bindings {first.workflow} ({first.kind}) and "
            f"{second.workflow} ({second.kind}) have priority {first.priority} and can match the same target",
            **where,
            agent_id=agent.agent_id,
            workflows=[first.workflow, second.workflow],
            kinds=[first.kind, second.kind],
            priority=first.priority,
        )
    return LoadedAgent(agent=agent, layer=layer, source_path=path)


def _parse(path: Path) -> Agent:
    try:
        raw = read_yaml_file(path)
    except YamlFileProblem as exc:
        raise ProfileError(AGENT_PARSE_ERROR, f"{path} {exc.reason}", path=str(path), line=exc.line) from None
    try:
        return Agent.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in err["loc"]) or "<root>" for err in exc.errors()})
        raise ProfileError(
            AGENT_SCHEMA_INVALID,
            f"{path} does not match the agent schema at: {', '.join(fields)}",
            path=str(path),
            fields=fields,
        ) from None
