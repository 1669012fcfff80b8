"""Gates: pure checks run after a turn."""

from wf_pipeline.gates.registry import GateResult, evaluate, gate_types, register

__all__ = ["GateResult", "evaluate", "gate_types", "register"]
