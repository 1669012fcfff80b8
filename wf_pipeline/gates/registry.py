"""Gate registry: gate_type name -> pure evaluator.

An evaluator takes the turn's raw output text, the raw texts of the turn's inputs
(keyed by input_ref) and the gate spec, and returns reason codes; no reasons means
pass. Evaluators are pure: same bytes in, same result out, nothing read from disk.
Reasons carry codes, claim ids and section keys, never payload text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wf_pipeline.errors import GATE_DUPLICATE_TYPE, GATE_UNKNOWN_TYPE
from wf_pipeline.registry import Registry


class GateSpecLike(Protocol):
    """What an evaluator reads of a profile's gate declaration (``profiles.schema.GateSpec`` fits).

    Attributes:
        gate_id: the gate's id in its profile.
        gate_type: the registered evaluator's name.
        required_fields: output fields that must be present and non-empty (JSON gates).
        rules: the gate type's options (e.g. ``max_drift``); the evaluator checks them.
        fail_on_violation: whether reasons fail the gate (else they are only recorded).
    """

    gate_id: str
    gate_type: str
    required_fields: list[str] | tuple[str, ...]
    rules: Mapping[str, Any]
    fail_on_violation: bool


Evaluator = Callable[[str, Mapping[str, str], GateSpecLike], list[str]]


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: ``outcome`` and the sorted reason codes (empty when nothing was wrong).

    Attributes:
        gate_id: the gate's id in its profile.
        outcome: ``pass`` or ``fail``.
        reasons: reason codes with claim ids and section keys, never payload text.
    """

    gate_id: str
    outcome: Literal["pass", "fail"]
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the outcome is ``pass``."""
        return self.outcome == "pass"


# A gate type is claimed once: a second registration is refused even for the same evaluator.
_EVALUATORS: Registry[str, Evaluator] = Registry(
    "gate evaluator",
    key="gate type",
    duplicate=GATE_DUPLICATE_TYPE,
    unknown=GATE_UNKNOWN_TYPE,
    reregister="never",
)


def register(gate_type: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator registering an evaluator under ``gate_type``; returns the evaluator unchanged.

    Workflow gates are registered by their plug-in (``wf_pipeline.workflows``).

    Args:
        gate_type: the name profiles use in a gate's ``gate_type``.

    Returns:
        A decorator that registers an `Evaluator` and returns it unchanged.

    Raises:
        GateError: ``GATE_DUPLICATE_TYPE``, when the decorator is applied, if
            ``gate_type`` is already registered (the same evaluator included).
    """

    def decorator(fn: Evaluator) -> Evaluator:
        return _EVALUATORS.register(gate_type, fn)

    return decorator


def gate_types() -> frozenset[str]:
    """Every registered gate type: the generic built-ins and those of the loaded workflows.

    Returns:
        The gate type names; the profile loader rejects any other
        (``PROFILE_UNKNOWN_GATE_TYPE``).
    """
    _load_builtin()
    return frozenset(_EVALUATORS.keys())


def evaluate(spec: GateSpecLike, output_text: str, inputs: Mapping[str, str]) -> GateResult:
    """Run the evaluator for ``spec.gate_type``.

    A gate with ``fail_on_violation: false`` records its reasons but passes.

    Args:
        spec: the gate's declaration.
        output_text: the turn's raw output text.
        inputs: input_ref -> raw text of the turn's inputs.

    Returns:
        The `GateResult`, reasons as the evaluator returned them.

    Raises:
        GateError: ``GATE_UNKNOWN_TYPE`` (with the known gate types) when no evaluator is
            registered for ``spec.gate_type``; the evaluator's ``GATE_RULES_INVALID`` for bad ``rules``.
    """
    _load_builtin()
    evaluator = _EVALUATORS.get(spec.gate_type)
    reasons = tuple(evaluator(output_text, inputs, spec))
    failed = bool(reasons) and spec.fail_on_violation
    return GateResult(gate_id=spec.gate_id, outcome="fail" if failed else "pass", reasons=reasons)


def _load_builtin() -> None:
    # Importing the module registers the built-in evaluators exactly once.
    from wf_pipeline.gates import builtin  # noqa: F401
