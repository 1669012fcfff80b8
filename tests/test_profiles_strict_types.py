"""Profile values of the wrong YAML type are rejected with PROFILE_SCHEMA_INVALID, never coerced."""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_profiles_loader import assert_load_fails, load_one, profile_doc, write_layer_root

from wf_pipeline.profiles.schema import (
    ArtifactPolicy,
    FailurePolicy,
    GateSpec,
    Profile,
    ThreadPolicy,
    TurnSpec,
)

# Where each schema model sits in a profile document (the first turn and gate stand for all).
MODEL_PATHS: dict[str, type] = {
    "": Profile,
    "thread_policy": ThreadPolicy,
    "turns.0": TurnSpec,
    "gates.0": GateSpec,
    "artifact_policy": ArtifactPolicy,
    "failure_policy": FailurePolicy,
}


def _scalar_kind(annotation: Any) -> str | None:
    """'bool', 'int' or 'str' for a field of that scalar type (optional or not), else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = {_scalar_kind(arg) for arg in typing.get_args(annotation) if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return {bool: "bool", int: "int", str: "str"}.get(annotation)


def fields_of_kind(kind: str) -> list[str]:
    """Dotted paths of every schema field whose type is ``kind``, read from the models themselves."""
    paths = []
    for prefix, model in MODEL_PATHS.items():
        for name, field in model.model_fields.items():
            if _scalar_kind(field.annotation) == kind:
                paths.append(f"{prefix}.{name}" if prefix else name)
    return paths


BOOL_FIELDS = fields_of_kind("bool")
INT_FIELDS = fields_of_kind("int")
STR_FIELDS = fields_of_kind("str")


def test_the_field_lists_cover_the_schema() -> None:
    # A guard: the parametrized tests below must not silently run over an empty list.
    assert BOOL_FIELDS == [
        "gates.0.fail_on_violation",
        "artifact_policy.store_output",
        "artifact_policy.store_prompt_render",
        "artifact_policy.store_context_payload",
        "failure_policy.resume_from_failed_turn",
    ]
    assert INT_FIELDS == [
        "thread_policy.max_turn_retries",
        "turns.0.seq",
        "turns.0.retry_limit",
        "turns.0.timeout_ms",
        "artifact_policy.max_output_bytes",
        "artifact_policy.max_prompt_bytes",
        "artifact_policy.max_context_bytes",
        "artifact_policy.max_context_tokens",
    ]
    assert {
        "workflow_id",
        "version",
        "title",
        "description",
        "turns.0.prompt_ref",
        "gates.0.gate_type",
    } <= set(STR_FIELDS)


def doc_with(path: str, value: Any) -> dict[str, Any]:
    """The test profile with the field at dotted ``path`` set to ``value``."""
    doc = profile_doc()
    *parents, leaf = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = copy.deepcopy(value)
    return doc


def assert_rejected(tmp_path: Path, path: str, value: Any, at: str | None = None) -> None:
    """Loading fails with PROFILE_SCHEMA_INVALID naming field ``at`` (default: ``path``) only."""
    error = assert_load_fails(tmp_path, doc_with(path, value), "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == [at or path]
    assert (at or path) in error.message


# The cases the profile reference names: none of them may load as a coerced value.
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("artifact_policy.max_output_bytes", True),
        ("failure_policy.resume_from_failed_turn", 0),
        ("failure_policy.resume_from_failed_turn", "false"),
        ("artifact_policy.store_output", "no"),
    ],
)
def test_reported_coercions_are_rejected(tmp_path: Path, path: str, value: Any) -> None:
    assert_rejected(tmp_path, path, value)


@pytest.mark.parametrize("path", BOOL_FIELDS)
@pytest.mark.parametrize("value", [0, 1, "false", "true", "no", "yes", 1.0])
def test_a_boolean_field_takes_only_a_yaml_boolean(tmp_path: Path, path: str, value: Any) -> None:
    assert_rejected(tmp_path, path, value)


@pytest.mark.parametrize("path", INT_FIELDS)
@pytest.mark.parametrize("value", [True, False, "5", 5.0, 5.5])
def test_an_integer_field_takes_only_a_yaml_integer(tmp_path: Path, path: str, value: Any) -> None:
    assert_rejected(tmp_path, path, value)


@pytest.mark.parametrize("path", STR_FIELDS)
@pytest.mark.parametrize("value", [7, True, 1.5])
def test_a_string_field_takes_only_a_yaml_string(tmp_path: Path, path: str, value: Any) -> None:
    assert_rejected(tmp_path, path, value)


@pytest.mark.parametrize(
    ("path", "value", "at"),
    [
        ("turns.0.input_refs", "context", None),  # a string is not a list of one
        ("gates.0.required_fields", [1], "gates.0.required_fields.0"),
        ("thread_policy.dedupe_key_fields", [True], "thread_policy.dedupe_key_fields.0"),
        ("gates.0.rules", ["max_drift"], None),
        ("turns.1.output_format", 1, None),
        ("failure_policy.mode", True, None),
    ],
)
def test_lists_mappings_and_choices_reject_other_types(
    tmp_path: Path, path: str, value: Any, at: str | None
) -> None:
    assert_rejected(tmp_path, path, value, at)


def test_yaml_spellings_of_the_right_types_still_load(tmp_path: Path) -> None:
    # Read from YAML text, so the values are what the YAML loader makes of these spellings.
    text = yaml.safe_dump(profile_doc(), sort_keys=False).replace(
        "artifact_policy: {}",
        "artifact_policy:\n  store_prompt_render: false\n  max_output_bytes: 0x400\n",
    )
    text = text.replace("failure_policy: {}", "failure_policy:\n  resume_from_failed_turn: False\n")
    profile = load_one(write_layer_root(tmp_path / "ok", {"tiny.yaml": text})).profile
    assert profile.artifact_policy.store_prompt_render is False
    assert profile.artifact_policy.max_output_bytes == 1024
    assert profile.failure_policy.resume_from_failed_turn is False
