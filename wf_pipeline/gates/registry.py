"""Gate registry: gate_type name -> pure evaluator.

An evaluator takes the turn's raw output text, the raw texts of the turn's inputs
(keyed by input_ref) and the gate spec, and returns reason codes; no reasons means
pass. Evaluators are pure: same bytes in, same result out, nothing read from disk.
Reasons carry codes, claim ids and section keys, never payload text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wf_pipeline.errors import GATE_DUPLICATE_TYPE, GATE_UNKNOWN_TYPE
from wf_pipeline.gates.findings import Finding, FindingTable, GateSubject, derive_findings, reason_blocks
from wf_pipeline.gates.rules import GateRules, resolved_rules
from wf_pipeline.metadata.canonical import digest_json
from wf_pipeline.metadata.records import GateOutcome, gate_outcome_blocks, gate_outcome_passed
from wf_pipeline.registry import Registry


class GateSpecLike(Protocol):
    """What an evaluator reads of a profile's gate declaration (``profiles.schema.GateSpec`` fits).

    Attributes:
        gate_id: the gate's id in its profile.
        gate_type: the registered evaluator's name.
        required_fields: output fields that must be present and non-empty (JSON gates).
        rules: the gate type's options (e.g. ``max_drift``), checked against its rules model
            (`wf_pipeline.gates.rules`) when the profile loads and again by `evaluate`.
        fail_on_violation: whether blocking reasons fail the gate; false makes every
            reason non-blocking (the verdict is ``warn``, `verdict_outcome`).
    """

    gate_id: str
    gate_type: str
    required_fields: list[str] | tuple[str, ...]
    rules: Mapping[str, Any]
    fail_on_violation: bool


Evaluator = Callable[[str, Mapping[str, str], GateSpecLike], list[str]]


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: ``outcome``, the sorted reason codes and their findings.

    Attributes:
        gate_id: the gate's id in its profile.
        outcome: ``pass`` (no reasons), ``warn`` (reasons, none blocking) or ``fail``
            (`verdict_outcome`).
        reasons: reason codes with claim ids and section keys, never payload text.
        findings: one `Finding` per reason (rule id, code, pointer, hint), sorted.
        rules_digest: `rules_digest` of the declaration the verdict was made under; None
            when built by hand.
    """

    gate_id: str
    outcome: GateOutcome
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    rules_digest: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the outcome is ``pass`` (a ``warn`` is not a pass, and does not block either)."""
        return gate_outcome_passed(self.outcome)

    @property
    def blocks(self) -> bool:
        """Whether the outcome is ``fail``, the only verdict the failure policy can stop a thread on."""
        return gate_outcome_blocks(self.outcome)

    def finding_dicts(self) -> tuple[dict[str, str], ...]:
        """The findings as ``{"rule_id", "code", "pointer", "hint"}`` dicts, in order."""
        return tuple(finding.to_dict() for finding in self.findings)


@dataclass(frozen=True)
class GateType:
    """A registered gate type: its evaluator, its rules model and its findings table.

    Attributes:
        evaluator: the pure check.
        rules: the typed model of its ``rules`` (`GateRules` itself when it takes none).
        findings: reason code -> `FindingRule` for the codes it gives beyond the generic ones.
    """

    evaluator: Evaluator
    rules: type[GateRules] = GateRules
    findings: FindingTable = field(default_factory=dict)


# A gate type is claimed once: a second registration is refused even for the same evaluator.
_GATE_TYPES: Registry[str, GateType] = Registry(
    "gate evaluator",
    key="gate type",
    duplicate=GATE_DUPLICATE_TYPE,
    unknown=GATE_UNKNOWN_TYPE,
    reregister="never",
)


def register(
    gate_type: str, *, rules: type[GateRules] = GateRules, findings: FindingTable | None = None
) -> Callable[[Evaluator], Evaluator]:
    """Decorator registering an evaluator under ``gate_type``; returns the evaluator unchanged.

    Workflow gates are registered by their plug-in (``wf_pipeline.workflows``).

    Args:
        gate_type: the name profiles use in a gate's ``gate_type``.
        rules: the typed model of the gate type's ``rules`` (default: takes none).
        findings: reason code -> `FindingRule` for the codes the evaluator gives beyond
            `wf_pipeline.gates.findings.GENERIC_FINDINGS`.

    Returns:
        A decorator that registers an `Evaluator` and returns it unchanged.

    Raises:
        GateError: ``GATE_DUPLICATE_TYPE``, when the decorator is applied, if
            ``gate_type`` is already registered (the same evaluator included).
    """

    def decorator(fn: Evaluator) -> Evaluator:
        _GATE_TYPES.register(gate_type, GateType(fn, rules, dict(findings or {})))
        return fn

    return decorator


def gate_types() -> frozenset[str]:
    """Every registered gate type: the generic built-ins and those of the loaded workflows.

    Returns:
        The gate type names; the profile loader rejects any other
        (``PROFILE_UNKNOWN_GATE_TYPE``).
    """
    _load_builtin()
    return frozenset(_GATE_TYPES.keys())


def gate_type(name: str) -> GateType:
    """The registered `GateType` named ``name``.

    Raises:
        GateError: ``GATE_UNKNOWN_TYPE`` (with the known gate types) when none is registered.
    """
    _load_builtin()
    return _GATE_TYPES.get(name)


def rules_digest(spec: GateSpecLike) -> str:
    """Canonical digest of a gate's declaration: type, required fields, resolved rules, fail switch.

    Args:
        spec: the gate's declaration.

    Returns:
        ``sha256:<hex>`` of the canonical JSON of ``{"gate_type", "required_fields",
        "rules" (the gate type's rules model with its defaults applied),
        "fail_on_violation"}``; a rule written out at its default value gives the same
        digest as the rule left out.

    Raises:
        GateError: ``GATE_UNKNOWN_TYPE``; ``GATE_RULES_INVALID`` for rules its model refuses.
    """
    registered = gate_type(spec.gate_type)
    resolved = resolved_rules(registered.rules, spec.gate_id, spec.rules)
    return digest_json(
        {
            "gate_type": spec.gate_type,
            "required_fields": list(spec.required_fields or ()),
            "rules": resolved.model_dump(mode="json"),
            "fail_on_violation": spec.fail_on_violation,
        }
    )


def rules_overrides_digest(spec: GateSpecLike) -> str | None:
    """Canonical digest of the rules a gate sets to other values than its type's defaults.

    Args:
        spec: the gate's declaration.

    Returns:
        ``sha256:<hex>`` of the canonical JSON of those rules, or None when every rule is at
        its default (so a profile that sets no threshold keeps the code version it had
        before thresholds were profile settings).

    Raises:
        GateError: ``GATE_UNKNOWN_TYPE``; ``GATE_RULES_INVALID`` for rules its model refuses.
    """
    registered = gate_type(spec.gate_type)
    resolved = resolved_rules(registered.rules, spec.gate_id, spec.rules)
    overrides = resolved.model_dump(mode="json", exclude_defaults=True)
    return digest_json(overrides) if overrides else None


def verdict_outcome(reasons: Sequence[str], table: FindingTable, fail_on_violation: bool) -> GateOutcome:
    """The outcome of a verdict with ``reasons``: the one place a gate's reasons become pass, warn or fail.

    Args:
        reasons: the evaluator's reason strings (``CODE[:part...]``).
        table: the gate type's findings table; a code's `FindingRule.blocking` says whether
            it can fail the gate (`wf_pipeline.gates.findings.reason_blocks`).
        fail_on_violation: the gate declaration's switch; false makes every reason
            non-blocking.

    Returns:
        ``pass`` when there are no reasons; ``fail`` when ``fail_on_violation`` holds and at
        least one reason blocks; ``warn`` otherwise (reasons a reader should see, none of
        which stops anything). Whether a ``fail`` stops its thread is the failure policy's
        call (`wf_pipeline.runtime.failure.gate_stops_thread`): under ``mode: continue`` a
        ``fail`` is recorded as ``fail`` and the thread goes on. Raises nothing.
    """
    if not reasons:
        return "pass"
    if fail_on_violation and any(reason_blocks(text, table) for text in reasons):
        return "fail"
    return "warn"


def evaluate(spec: GateSpecLike, output_text: str, inputs: Mapping[str, str]) -> GateResult:
    """Run the evaluator for ``spec.gate_type`` and derive the findings of its reasons.

    The outcome is `verdict_outcome`'s: a gate with ``fail_on_violation: false``, or one
    whose reasons are all non-blocking findings, records them with outcome ``warn``.

    Args:
        spec: the gate's declaration.
        output_text: the turn's raw output text.
        inputs: input_ref -> raw text of the turn's inputs.

    Returns:
        The `GateResult`: reasons as the evaluator returned them, one finding per reason
        (the gate type's findings table), and the declaration's `rules_digest`.

    Raises:
        GateError: ``GATE_UNKNOWN_TYPE`` (with the known gate types) when no evaluator is
            registered for ``spec.gate_type``; ``GATE_RULES_INVALID`` for ``rules`` the gate
            type's rules model refuses (a loaded profile never has them).
    """
    registered = gate_type(spec.gate_type)
    digest = rules_digest(spec)
    reasons = tuple(registered.evaluator(output_text, inputs, spec))
    findings = derive_findings(reasons, registered.findings, GateSubject(output_text, inputs))
    return GateResult(
        gate_id=spec.gate_id,
        outcome=verdict_outcome(reasons, registered.findings, spec.fail_on_violation),
        reasons=reasons,
        findings=findings,
        rules_digest=digest,
    )


def _load_builtin() -> None:
    # Importing the module registers the built-in evaluators exactly once.
    from wf_pipeline.gates import builtin  # noqa: F401
