"""Typed gate rules: each gate type declares its ``rules`` as a small pydantic model.

A gate type's rules model names every rule it reads, with its type, bounds and default
(docs/profiles.md lists them). The profile loader validates a gate's ``rules`` against it
when the profile loads (`rule_problems`, reported as ``PROFILE_GATE_RULE_*``); an
evaluator reads the validated, defaulted values (`resolved_rules`). The resolved rules
are part of the gate's `rules_digest` and so of the code version of the turn it checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from wf_pipeline.errors import GATE_RULES_INVALID, GateError

RulesT = TypeVar("RulesT", bound="GateRules")

ProblemKind = Literal["unknown", "type", "range"]

# pydantic error types that mean "a value outside the declared bounds" rather than "not that type".
_RANGE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "finite_number",
        "value_error",
    }
)


class GateRules(BaseModel):
    """Base of every gate type's rules model: frozen, strict (no coercion), unknown rules refused.

    A gate type without rules uses this model as it is: any rule given is unknown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with a gate's ``rules``.

    Attributes:
        rule: the rule's name (its first path segment; ``sections`` for ``sections.0``).
        kind: ``unknown`` (not declared by the gate type), ``type`` (wrong type or a
            required rule missing) or ``range`` (outside the declared bounds).
        value: the figure given (None when missing), as a short repr.
        expected: what the rule must be (pydantic's message).
    """

    rule: str
    kind: ProblemKind
    value: str | None
    expected: str


def _kind(error_type: str) -> ProblemKind:
    if error_type == "extra_forbidden":
        return "unknown"
    return "range" if error_type in _RANGE_ERRORS else "type"


def rule_problems(model: type[GateRules], rules: Mapping[str, Any]) -> list[RuleProblem]:
    """Every problem of ``rules`` against the gate type's ``model``, sorted by rule name.

    Args:
        model: the gate type's rules model.
        rules: the gate's ``rules`` mapping as the profile gives it.

    Returns:
        One `RuleProblem` per offending rule (the first error of each), empty when the
        rules are valid. Raises nothing.
    """
    try:
        model.model_validate(dict(rules))
    except ValidationError as exc:
        problems: dict[str, RuleProblem] = {}
        for error in exc.errors():
            rule = str(error["loc"][0]) if error["loc"] else "<rules>"
            if rule in problems:
                continue
            value = None if error["type"] == "missing" else repr(rules.get(rule))[:60]
            problems[rule] = RuleProblem(rule, _kind(error["type"]), value, error["msg"])
        return [problems[rule] for rule in sorted(problems)]
    return []


def resolved_rules(model: type[RulesT], gate_id: str, rules: Mapping[str, Any] | None) -> RulesT:
    """The gate's ``rules`` validated against ``model``, defaults applied.

    Args:
        model: the gate type's rules model.
        gate_id: the gate, for the error.
        rules: the gate's ``rules`` (None as empty).

    Returns:
        The validated model instance.

    Raises:
        GateError: ``GATE_RULES_INVALID`` (figures: gate_id, rule, kind, value) for the first
            problem, when the rules did not go through the profile loader (which reports
            them as ``PROFILE_GATE_RULE_*`` at load).
    """
    problems = rule_problems(model, rules or {})
    if problems:
        first = problems[0]
        raise GateError(
            GATE_RULES_INVALID,
            f"gate {gate_id!r} rule {first.rule!r} ({first.kind}): {first.expected}",
            gate_id=gate_id,
            rule=first.rule,
            kind=first.kind,
            value=first.value,
        )
    return model.model_validate(dict(rules or {}))
