"""The docs writer's registration: the one place that plugs this workflow into the generic registries.

``register()`` declares, for ``docs_writer_thread_v1`` and any profile reusing its
output types and gate types:

- its payload schemas, by output type (``metadata.payloads.register_output_model``);
- its README section vocabulary for the generic ``required_sections`` gate;
- its gates, by gate type, each with its typed rules and findings table (``gates.register``);
- its offline turns, by output type (``providers.offline.register_offline_turn``);
- its output sink, for frame type ``readme`` (``runtime.sinks.register_output_sink``);
- its per-file context extracts, for frame type ``readme``
  (``tree.context.register_context_extractor``).
"""

from __future__ import annotations

from wf_pipeline.gates.generic import register_section_headings, sorted_reasons
from wf_pipeline.gates.registry import register as register_gate
from wf_pipeline.gates.rules import GateRules
from wf_pipeline.metadata.payloads import register_output_model
from wf_pipeline.providers.offline import register_offline_turn
from wf_pipeline.runtime.sinks import register_output_sink
from wf_pipeline.tree.context import register_context_extractor
from wf_pipeline.workflows.docs_writer.context_extract import context_extract
from wf_pipeline.workflows.docs_writer.gates import FINDINGS, GATES, RULES
from wf_pipeline.workflows.docs_writer.offline import OFFLINE_TURNS
from wf_pipeline.workflows.docs_writer.payloads import OUTPUT_MODELS, README_SECTIONS
from wf_pipeline.workflows.docs_writer.sink import README_SINK

# The frame type of docs_writer_thread_v1 (its profile's target_frame_type).
FRAME_TYPE = "readme"


def register() -> None:
    """Register the docs writer's schemas, section headings, gates, offline turns and output sink.

    Call once per process (``wf_pipeline.workflows.load_builtin_workflows`` does).

    Raises:
        GateError: ``GATE_DUPLICATE_TYPE`` when one of its gate types is already taken
            (a second call raises it too); ``GATE_DUPLICATE_SECTION_KEY`` when a section
            key already names another heading.
        MetadataError: ``OUTPUT_TYPE_DUPLICATE`` when another workflow owns one of its
            output types' schemas.
        ProviderError: ``PROVIDER_DUPLICATE_OUTPUT`` when another workflow owns one of its
            output types' offline turns.
        RunError: ``RUN_SINK_DUPLICATE`` when another sink serves frame type ``readme``.
        TreeError: ``TREE_EXTRACTOR_DUPLICATE`` when another extractor serves frame type ``readme``.
    """
    for output_type, model in OUTPUT_MODELS.items():
        register_output_model(output_type, model)
    register_section_headings(README_SECTIONS)
    for gate_type, evaluator in GATES.items():
        register_gate(gate_type, rules=RULES.get(gate_type, GateRules), findings=FINDINGS[gate_type])(
            sorted_reasons(evaluator)
        )
    for output_type, turn in OFFLINE_TURNS.items():
        register_offline_turn(output_type, turn)
    register_output_sink(FRAME_TYPE, README_SINK)
    register_context_extractor(FRAME_TYPE, context_extract)
