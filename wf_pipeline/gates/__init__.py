"""Gates: pure checks run after a turn, with typed rules and findings per verdict."""

from wf_pipeline.gates.findings import Finding, FindingRule, group_by_rule
from wf_pipeline.gates.registry import (
    GateResult,
    evaluate,
    gate_type,
    gate_types,
    register,
    rules_digest,
    verdict_outcome,
)
from wf_pipeline.gates.rules import GateRules, RuleProblem, rule_problems

__all__ = [
    "Finding",
    "FindingRule",
    "GateResult",
    "GateRules",
    "RuleProblem",
    "evaluate",
    "gate_type",
    "gate_types",
    "group_by_rule",
    "register",
    "rule_problems",
    "rules_digest",
    "verdict_outcome",
]
