"""JSON from outside (model output, stored artifacts) nested deeper than Python's parser follows
is reported with the product's codes, never as a raw RecursionError."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from wf_pipeline.cas import MemoryArtifactStore
from wf_pipeline.errors import CasError, MetadataError, RunError
from wf_pipeline.gates import evaluate
from wf_pipeline.metadata.canonical import parse_json
from wf_pipeline.metadata.payloads import parse_json_output
from wf_pipeline.runtime.turn import _checked_output
from wf_pipeline.workflows.docs_writer.payloads import ReadmeStruct

DEPTH = 20_000  # far past the interpreter's recursion limit, still a small document
DEEP = '{"title": ' + "[" * DEPTH + "]" * DEPTH + "}"


@dataclass(frozen=True)
class Spec:
    gate_type: str
    gate_id: str = "gate"
    required_fields: tuple[str, ...] = ("title",)
    rules: dict[str, Any] = field(default_factory=dict)
    fail_on_violation: bool = True


def test_parse_json_reports_deep_nesting_as_malformed_json() -> None:
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        parse_json(DEEP)
    with pytest.raises(ValueError):
        parse_json(DEEP.encode())
    assert parse_json('{"a": [[1]]}') == {"a": [[1]]}


def test_a_deep_model_output_fails_the_turn_with_its_code() -> None:
    with pytest.raises(RunError) as caught:
        _checked_output(DEEP, "json", 10 * len(DEEP))
    assert caught.value.code == "RUN_OUTPUT_SHAPE"
    with pytest.raises(MetadataError) as parsed:
        parse_json_output(DEEP, ReadmeStruct)
    assert parsed.value.code == "OUTPUT_NOT_JSON"


def test_a_deep_output_fails_a_gate_with_a_reason() -> None:
    result = evaluate(Spec("schema_required_fields"), DEEP, {})
    assert result.outcome == "fail"
    assert any("OUTPUT_NOT_JSON" in reason for reason in result.reasons)


def test_a_deep_stored_artifact_is_a_decode_error() -> None:
    store = MemoryArtifactStore()
    ref = store.put_text(DEEP)
    with pytest.raises(CasError) as caught:
        store.get_json(ref.artifact_id)
    assert caught.value.code == "CAS_DECODE_ERROR"
