"""Profile fields that used to be parsed and ignored: each one works, or fails to load with its code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_profiles_loader import assert_load_fails, load_one, profile_doc, write_layer_root

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.canonical import derived_id
from wf_pipeline.metadata.records import thread_id_for, thread_id_from_key
from wf_pipeline.profiles import FailurePolicy

DEFAULT_KEY = ["workflow_id", "target_node_id", "target_frame_id"]


def loads(tmp_path: Path, doc: dict[str, Any]):
    return load_one(write_layer_root(tmp_path / "ok", {"tiny.yaml": doc})).profile


# --- thread_profile and start_conditions: rejected ----------------------------------


def test_thread_profile_is_no_longer_a_field(tmp_path: Path) -> None:
    error = assert_load_fails(tmp_path, profile_doc(thread_profile="default"), "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["thread_profile"]


@pytest.mark.parametrize("conditions", [["children_completed"], [{"when": "always"}]])
def test_a_start_condition_is_rejected_not_ignored(tmp_path: Path, conditions: list[Any]) -> None:
    doc = profile_doc(thread_policy={"start_conditions": conditions})
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["thread_policy.start_conditions"]
    assert error.details["count"] == 1
    assert "not evaluated" in error.message


def test_no_start_conditions_load(tmp_path: Path) -> None:
    assert (
        loads(tmp_path, profile_doc(thread_policy={"start_conditions": []})).thread_policy.start_conditions
        == []
    )


# --- dedupe_key_fields: validated ---------------------------------------------------


def test_unknown_dedupe_field_is_named(tmp_path: Path) -> None:
    doc = profile_doc(thread_policy={"dedupe_key_fields": [*DEFAULT_KEY, "target_colour"]})
    error = assert_load_fails(tmp_path, doc, "PROFILE_UNKNOWN_DEDUPE_FIELD")
    assert error.details["unknown"] == ["target_colour"]
    assert error.details["fields"] == ["thread_policy.dedupe_key_fields"]
    assert "target_colour" in error.message


@pytest.mark.parametrize("left_out", ["workflow_id", "target_node_id"])
def test_dedupe_key_without_a_required_field_fails(tmp_path: Path, left_out: str) -> None:
    fields = [name for name in DEFAULT_KEY if name != left_out] + ["target_key"]
    doc = profile_doc(thread_policy={"dedupe_key_fields": fields})
    error = assert_load_fails(tmp_path, doc, "PROFILE_DEDUPE_KEY_INCOMPLETE")
    assert error.details["missing"] == [left_out]


def test_repeated_dedupe_field_is_schema_invalid(tmp_path: Path) -> None:
    doc = profile_doc(thread_policy={"dedupe_key_fields": [*DEFAULT_KEY, "workflow_id"]})
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["thread_policy.dedupe_key_fields"]


def test_errors_of_different_kinds_are_reported_together_as_schema_invalid(tmp_path: Path) -> None:
    doc = profile_doc(workflow_id="Bad-Id", thread_policy={"dedupe_key_fields": ["workflow_id", "colour"]})
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["thread_policy.dedupe_key_fields", "workflow_id"]


@pytest.mark.parametrize(
    "fields",
    [
        ["workflow_id", "target_node_id"],
        [*DEFAULT_KEY, "target_key"],
        ["target_path", "target_node_id", "workflow_id"],
    ],
)
def test_allowed_dedupe_keys_load(tmp_path: Path, fields: list[str]) -> None:
    assert (
        loads(
            tmp_path, profile_doc(thread_policy={"dedupe_key_fields": fields})
        ).thread_policy.dedupe_key_fields
        == fields
    )


# --- the thread identity a dedupe key builds ----------------------------------------

VALUES = {
    "workflow_id": "docs_writer_thread_v1",
    "target_node_id": "node:" + "a" * 64,
    "target_frame_id": "readme@1.0.0-0123456789ab",
    "target_key": "repo/pkg",
    "target_path": "pkg",
}


def test_the_default_key_keeps_the_ids_of_earlier_releases() -> None:
    # Computed by the previous release's thread_id_for for these values.
    assert thread_id_from_key(DEFAULT_KEY, VALUES) == "thread:f85be06843f07d9f12b9d8e8"
    assert thread_id_from_key(reversed(DEFAULT_KEY), VALUES) == "thread:f85be06843f07d9f12b9d8e8"
    assert thread_id_for("wf", "node:x") == "thread:8e530b8ba7c879dd8fbdc138"
    assert thread_id_from_key(
        ["workflow_id", "target_node_id"], {**VALUES, "workflow_id": "wf", "target_node_id": "node:x"}
    ) == ("thread:8e530b8ba7c879dd8fbdc138")


def test_each_key_field_changes_identity_only_when_named() -> None:
    base = thread_id_from_key(DEFAULT_KEY, VALUES)
    by_key = thread_id_from_key([*DEFAULT_KEY, "target_key"], VALUES)
    by_path = thread_id_from_key([*DEFAULT_KEY, "target_path"], VALUES)
    assert len({base, by_key, by_path}) == 3
    # A value outside the key does not matter; one inside it does.
    moved = {**VALUES, "target_key": "copy/pkg"}
    assert thread_id_from_key(DEFAULT_KEY, moved) == base
    assert thread_id_from_key([*DEFAULT_KEY, "target_key"], moved) != by_key
    new_prompt = {**VALUES, "target_frame_id": "readme@1.0.0-ffffffffffff"}
    assert thread_id_from_key(DEFAULT_KEY, new_prompt) != base
    assert thread_id_from_key(["workflow_id", "target_node_id"], new_prompt) == thread_id_from_key(
        ["workflow_id", "target_node_id"], VALUES
    )
    # key and path hold the same text here: naming one or the other still differs.
    same = {**VALUES, "target_key": "pkg"}
    assert thread_id_from_key([*DEFAULT_KEY, "target_key"], same) != thread_id_from_key(
        [*DEFAULT_KEY, "target_path"], same
    )
    assert derived_id("thread", *(VALUES[name] for name in DEFAULT_KEY)) == base


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([*DEFAULT_KEY, "colour"], "METADATA_UNKNOWN_THREAD_KEY_FIELD"),
        (["workflow_id", "target_key"], "METADATA_THREAD_KEY_INCOMPLETE"),
    ],
)
def test_a_key_built_by_hand_is_checked_too(fields: list[str], code: str) -> None:
    with pytest.raises(MetadataError) as caught:
        thread_id_from_key(fields, VALUES)
    assert caught.value.code == code


# --- failure_policy: one mode, the older switch as its alias ------------------------


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ({}, "stop_on_gate_fail"),
        ({"mode": "continue"}, "continue"),
        ({"stop_on_gate_fail": False}, "continue"),
        ({"stop_on_gate_fail": True}, "stop_on_gate_fail"),
        ({"mode": "continue", "stop_on_gate_fail": False}, "continue"),
        ({"mode": "stop_on_gate_fail", "stop_on_gate_fail": True}, "stop_on_gate_fail"),
    ],
)
def test_mode_and_the_older_switch_agree(tmp_path: Path, policy: dict[str, Any], mode: str) -> None:
    loaded = loads(tmp_path, profile_doc(failure_policy=policy)).failure_policy
    assert loaded.mode == mode
    assert loaded.stop_on_gate_fail is (mode == "stop_on_gate_fail")
    assert "stop_on_gate_fail" not in loaded.model_dump()  # one stored value, no second copy


@pytest.mark.parametrize(
    "policy",
    [
        {"mode": "continue", "stop_on_gate_fail": True},
        {"mode": "stop_on_gate_fail", "stop_on_gate_fail": False},
    ],
)
def test_contradicting_mode_and_switch_fail(tmp_path: Path, policy: dict[str, Any]) -> None:
    error = assert_load_fails(tmp_path, profile_doc(failure_policy=policy), "PROFILE_FAILURE_POLICY_CONFLICT")
    assert error.details["fields"] == ["failure_policy"]
    assert error.details["mode"] == policy["mode"]
    assert error.details["switch"] is policy["stop_on_gate_fail"]


def test_switch_that_is_not_a_boolean_is_schema_invalid(tmp_path: Path) -> None:
    error = assert_load_fails(
        tmp_path, profile_doc(failure_policy={"stop_on_gate_fail": "yes"}), "PROFILE_SCHEMA_INVALID"
    )
    assert error.details["fields"] == ["failure_policy"]


def test_resume_from_failed_turn_defaults_to_true() -> None:
    assert FailurePolicy().resume_from_failed_turn is True
    assert FailurePolicy(resume_from_failed_turn=False).resume_from_failed_turn is False


# --- artifact_policy: what cannot be left unstored fails to load --------------------


def test_store_output_false_names_why_each_output_is_needed(tmp_path: Path) -> None:
    error = assert_load_fails(
        tmp_path, profile_doc(artifact_policy={"store_output": False}), "PROFILE_ARTIFACT_POLICY_CONFLICT"
    )
    assert error.details["field"] == "artifact_policy.store_output"
    assert error.details["needed"] == {"notes": ["read by turn refine"], "final_text": ["the final output"]}


def test_store_output_false_is_refused_even_for_an_output_nothing_reads(tmp_path: Path) -> None:
    doc = profile_doc(artifact_policy={"store_output": False})
    doc["turns"][1]["input_refs"] = []
    doc["turns"][1]["prompt_ref"] = "prompts/system.md"  # reads no inputs
    error = assert_load_fails(tmp_path, doc, "PROFILE_ARTIFACT_POLICY_CONFLICT")
    assert error.details["needed"]["notes"] == ["read back to reuse the completed turn"]


def test_store_context_payload_false_fails_when_a_turn_reads_the_context(tmp_path: Path) -> None:
    error = assert_load_fails(
        tmp_path,
        profile_doc(artifact_policy={"store_context_payload": False}),
        "PROFILE_ARTIFACT_POLICY_CONFLICT",
    )
    assert error.details["field"] == "artifact_policy.store_context_payload"
    assert error.details["needed"] == {"context": ["read by turn gather"]}


def test_store_context_payload_false_loads_when_no_turn_reads_the_context(tmp_path: Path) -> None:
    doc = profile_doc(artifact_policy={"store_context_payload": False, "store_prompt_render": False})
    doc["turns"][0]["input_refs"] = []
    doc["turns"][0]["prompt_ref"] = "prompts/system.md"
    policy = loads(tmp_path, doc).artifact_policy
    assert (policy.store_context_payload, policy.store_prompt_render) == (False, False)


@pytest.mark.parametrize("limit", [0, -1])
def test_max_output_bytes_must_be_positive(tmp_path: Path, limit: int) -> None:
    error = assert_load_fails(
        tmp_path, profile_doc(artifact_policy={"max_output_bytes": limit}), "PROFILE_SCHEMA_INVALID"
    )
    assert error.details["fields"] == ["artifact_policy.max_output_bytes"]


def test_an_unknown_mode_is_schema_invalid_even_beside_the_switch(tmp_path: Path) -> None:
    doc = profile_doc(failure_policy={"mode": "ignore", "stop_on_gate_fail": True})
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["failure_policy.mode"]


def test_conflict_message_states_both_values(tmp_path: Path) -> None:
    doc = profile_doc(failure_policy={"mode": "continue", "stop_on_gate_fail": True})
    error = assert_load_fails(tmp_path, doc, "PROFILE_FAILURE_POLICY_CONFLICT")
    assert "mode 'continue' contradicts stop_on_gate_fail: true" in error.message
