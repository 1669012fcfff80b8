"""The architecture notes' offline turns: deterministic, model-free output for each output type.

Each reads its inputs strictly (`wf_pipeline.providers.offline.parsed_input`) and calls
the analysis (``analysis``); the context is read through the evidence view
(`wf_pipeline.text.evidence.evidence_view`), as the gates read it, so no quote holds a
secret. The ``reverify`` input of ``render`` may be absent (a skipped low-confidence
branch): the notes are rendered from the first verification, without the notice.
"""

from __future__ import annotations

from collections.abc import Mapping

from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.providers.base import ProviderRequest
from wf_pipeline.providers.offline import OfflineTurn, json_text, parsed_input
from wf_pipeline.text.evidence import evidence_view
from wf_pipeline.workflows.architecture_notes.analysis import (
    build_entry_points,
    build_module_graph,
    synthesize,
    verify_synthesis,
)
from wf_pipeline.workflows.architecture_notes.payloads import (
    ArchitectureSynthesis,
    ArchVerification,
    EntryPoints,
    ModuleGraph,
)
from wf_pipeline.workflows.architecture_notes.render import render_notes

MODULE_GRAPH_REF = "module_graph"
ENTRY_POINTS_REF = "entry_points"
SYNTHESIS_REF = "architecture_synthesis"
VERIFICATION_REF = "architecture_verification"
REVERIFICATION_REF = "architecture_reverification"


def took_low_confidence_path(inputs: Mapping[str, object]) -> bool:
    """Whether a turn's inputs hold ``reverify``'s report: the low-confidence branch was taken.

    The one rule both the notes (their "needs review" notice) and their gate (the notice
    expected, and the verdict ``warn``) follow.

    Args:
        inputs: input_ref -> text (a request's inputs or a gate's inputs); a branch that was
            not taken leaves its output out of them.

    Returns:
        True when ``architecture_reverification`` is among them. Raises nothing.
    """
    return REVERIFICATION_REF in inputs


def _context(request: ProviderRequest) -> ContextPayload:
    return evidence_view(parsed_input(request, CONTEXT_REF, ContextPayload))


def module_graph_turn(request: ProviderRequest) -> str:
    """``module_graph`` JSON from ``context``. Raises ProviderError PROVIDER_INPUT_*."""
    return json_text(build_module_graph(_context(request)))


def entry_points_turn(request: ProviderRequest) -> str:
    """``entry_points`` JSON from ``context``. Raises ProviderError PROVIDER_INPUT_*."""
    return json_text(build_entry_points(_context(request)))


def synthesis_turn(request: ProviderRequest) -> str:
    """``architecture_synthesis`` JSON from ``context``, ``module_graph`` and ``entry_points``.

    Raises ProviderError PROVIDER_INPUT_*.
    """
    graph = parsed_input(request, MODULE_GRAPH_REF, ModuleGraph)
    entries = parsed_input(request, ENTRY_POINTS_REF, EntryPoints)
    return json_text(synthesize(_context(request), graph, entries))


def verification_turn(request: ProviderRequest) -> str:
    """``architecture_verification`` JSON: every synthesis claim checked. Raises ProviderError PROVIDER_INPUT_*."""
    synthesis = parsed_input(request, SYNTHESIS_REF, ArchitectureSynthesis)
    return json_text(verify_synthesis(synthesis, _context(request)))


def reverification_turn(request: ProviderRequest) -> str:
    """``architecture_reverification`` JSON: the stricter check. Raises ProviderError PROVIDER_INPUT_*."""
    synthesis = parsed_input(request, SYNTHESIS_REF, ArchitectureSynthesis)
    return json_text(verify_synthesis(synthesis, _context(request), strict=True))


def notes_turn(request: ProviderRequest) -> str:
    """The markdown notes from the synthesis, its verification and (when present) the reverification."""
    synthesis = parsed_input(request, SYNTHESIS_REF, ArchitectureSynthesis)
    report = parsed_input(request, VERIFICATION_REF, ArchVerification)
    reverify = (
        parsed_input(request, REVERIFICATION_REF, ArchVerification)
        if took_low_confidence_path(request.inputs)
        else None
    )
    return render_notes(synthesis, report, reverify)


# Output type -> offline turn, registered by the plug-in.
OFFLINE_TURNS: dict[str, OfflineTurn] = {
    "module_graph": module_graph_turn,
    "entry_points": entry_points_turn,
    "architecture_synthesis": synthesis_turn,
    "architecture_verification": verification_turn,
    "architecture_reverification": reverification_turn,
    "architecture_notes": notes_turn,
}
