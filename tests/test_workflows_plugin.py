"""Workflows are plug-ins: one registration per workflow, generic registries that name none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wf_pipeline.errors import GateError, MetadataError, ProviderError, RunError
from wf_pipeline.gates import gate_types
from wf_pipeline.gates.generic import register_section_headings
from wf_pipeline.metadata.payloads import StrictPayload, output_model, register_output_model
from wf_pipeline.providers import ProviderRequest, create_provider
from wf_pipeline.providers.offline import register_offline_turn
from wf_pipeline.runtime.sinks import output_sink, register_output_sink
from wf_pipeline.workflows import BUILTIN_WORKFLOWS, load_builtin_workflows
from wf_pipeline.workflows.docs_writer.offline import OFFLINE_TURNS
from wf_pipeline.workflows.docs_writer.payloads import EvidenceMap, ReadmeStruct
from wf_pipeline.workflows.docs_writer.sink import README_SINK

PACKAGE = Path(__file__).resolve().parent.parent / "wf_pipeline"
# Generic packages: they serve every workflow and may import none.
GENERIC = ("runtime", "gates", "providers", "cas", "records", "metadata", "tree", "text")


def test_loading_registers_the_docs_writer_once() -> None:
    assert load_builtin_workflows() == BUILTIN_WORKFLOWS == ("architecture_notes", "docs_writer")
    assert load_builtin_workflows() == BUILTIN_WORKFLOWS  # a second call registers nothing twice
    assert {
        "docs_evidence_map",
        "docs_readme_final",
        "no_semantic_drift",
        "required_sections",
    } <= gate_types()
    assert output_model("evidence_map") is EvidenceMap
    assert output_model("readme_struct") is ReadmeStruct
    assert output_model("readme_final") is None  # markdown has no JSON schema
    assert output_sink("readme") is README_SINK


def test_the_offline_provider_serves_only_registered_output_types() -> None:
    request = ProviderRequest(
        workflow_id="w",
        thread_id="thread:x",
        turn_id="t",
        output_type="no_such_output",
        output_format="json",
        system_prompt="",
        user_prompt="",
        inputs={},
    )
    with pytest.raises(ProviderError) as raised:
        create_provider("offline").complete(request)
    assert raised.value.code == "PROVIDER_UNSUPPORTED_OUTPUT"
    assert set(OFFLINE_TURNS) <= set(raised.value.details["known"])


def test_registries_refuse_a_second_owner() -> None:
    class Other(StrictPayload):
        value: int

    with pytest.raises(MetadataError) as raised:
        register_output_model("evidence_map", Other)
    assert raised.value.code == "OUTPUT_TYPE_DUPLICATE"
    with pytest.raises(ProviderError) as raised:
        register_offline_turn("evidence_map", lambda request: "{}")
    assert raised.value.code == "PROVIDER_DUPLICATE_OUTPUT"
    with pytest.raises(RunError) as raised:
        register_output_sink("readme", object())  # type: ignore[arg-type]
    assert raised.value.code == "RUN_SINK_DUPLICATE"
    with pytest.raises(GateError) as raised:
        register_section_headings({"usage": "How to use"})
    assert raised.value.code == "GATE_DUPLICATE_SECTION_KEY"
    # The owners are unchanged.
    assert output_model("evidence_map") is EvidenceMap
    assert output_sink("readme") is README_SINK


def test_an_unknown_frame_type_has_no_sink() -> None:
    with pytest.raises(RunError) as raised:
        output_sink("no_such_frame")
    assert raised.value.code == "RUN_NO_OUTPUT_SINK"


# The docs writer's own words: its output file and its turns' output types.
_DOCS_WRITER_WORDS = re.compile(r"readme|evidence_map|verification_report", re.IGNORECASE)


@pytest.mark.parametrize("package", (*GENERIC, "service"))
def test_generic_packages_never_name_the_docs_writer(package: str) -> None:
    """What the docs writer owns lives in workflows/docs_writer/ (imports: the lint-imports contracts)."""
    offenders = {
        path.relative_to(PACKAGE).as_posix(): sorted(
            {m.group(0).lower() for m in _DOCS_WRITER_WORDS.finditer(text)}
        )
        for path in sorted((PACKAGE / package).rglob("*.py"))
        if _DOCS_WRITER_WORDS.search(text := path.read_text(encoding="utf-8"))
    }
    assert offenders == {}
