"""The architecture notes' registration: the one place that plugs this workflow into the generic registries.

``register()`` declares, for ``architecture_notes_v1`` and any profile reusing its
output types and gate types:

- its payload schemas, by output type (``metadata.payloads.register_output_model``);
- its gates, by gate type (``gates.register``);
- its offline turns, by output type (``providers.offline.register_offline_turn``);
- its per-file context extract, for frame type ``architecture``
  (``tree.context.register_context_extractor``).

It registers no output sink: its profile declares its output file (``outputs:``), which
the runtime writes (`wf_pipeline.runtime.sinks.write_declared_output`).
"""

from __future__ import annotations

from wf_pipeline.gates.generic import sorted_reasons
from wf_pipeline.gates.registry import register as register_gate
from wf_pipeline.gates.rules import GateRules
from wf_pipeline.metadata.payloads import register_output_model
from wf_pipeline.providers.offline import register_offline_turn
from wf_pipeline.tree.context import register_context_extractor
from wf_pipeline.workflows.architecture_notes.context_extract import architecture_extract
from wf_pipeline.workflows.architecture_notes.gates import FINDINGS, GATES, RULES
from wf_pipeline.workflows.architecture_notes.offline import OFFLINE_TURNS
from wf_pipeline.workflows.architecture_notes.payloads import OUTPUT_MODELS

# The frame type of architecture_notes_v1 (its profile's target_frame_type).
FRAME_TYPE = "architecture"


def register() -> None:
    """Register the architecture notes' schemas, gates, offline turns and context extractor.

    Call once per process (``wf_pipeline.workflows.load_builtin_workflows`` does).

    Raises:
        GateError: ``GATE_DUPLICATE_TYPE`` when one of its gate types is already taken.
        MetadataError: ``OUTPUT_TYPE_DUPLICATE`` when another workflow owns one of its output types.
        ProviderError: ``PROVIDER_DUPLICATE_OUTPUT`` likewise for its offline turns.
        TreeError: ``TREE_EXTRACTOR_DUPLICATE`` when another extractor serves frame type ``architecture``.
    """
    for output_type, model in OUTPUT_MODELS.items():
        register_output_model(output_type, model)
    for gate_type, evaluator in GATES.items():
        register_gate(gate_type, rules=RULES.get(gate_type, GateRules), findings=FINDINGS[gate_type])(
            sorted_reasons(evaluator)
        )
    for output_type, turn in OFFLINE_TURNS.items():
        register_offline_turn(output_type, turn)
    register_context_extractor(FRAME_TYPE, architecture_extract)
