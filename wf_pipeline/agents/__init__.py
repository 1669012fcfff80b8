"""Agents declared in YAML: bound workflows and the policy that picks one per target of a tree."""

from __future__ import annotations

from wf_pipeline.agents.loader import (
    AgentCatalog,
    AgentProblem,
    LoadedAgent,
    load_agent_file,
    load_agents,
)
from wf_pipeline.agents.policy import Agent, AgentPlan, Binding, plan_agent, select

__all__ = [
    "Agent",
    "AgentCatalog",
    "AgentPlan",
    "AgentProblem",
    "Binding",
    "LoadedAgent",
    "load_agent_file",
    "load_agents",
    "plan_agent",
    "select",
]
