"""The profile schema: one YAML workflow declaration as frozen pydantic models.

These models check shape only (types, bounds, identifier syntax, unknown keys). Checks
that relate parts of a profile to each other or to the outside world (seq order, gate
references, input refs, prompt files, gate types) live in the loader, because each of
them has its own stable error code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Identifiers become Dagster asset keys, op names and check names, so they stay
# lowercase snake case.
IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]*$"
VERSION_PATTERN = r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$"
# The input ref every turn may name: the target directory's context payload.
CONTEXT_INPUT = "context"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _unique(values: list[str], what: str) -> list[str]:
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(duplicates)}")
    return values


class ThreadPolicy(_Frozen):
    start_conditions: list[NonEmpty] = []
    dedupe_key_fields: list[NonEmpty] = Field(
        default_factory=lambda: ["workflow_id", "target_node_id", "target_frame_id"], min_length=1
    )
    max_turn_retries: int = Field(default=2, ge=0)

    @field_validator("dedupe_key_fields")
    @classmethod
    def _unique_fields(cls, value: list[str]) -> list[str]:
        return _unique(value, "dedupe_key_fields")


class TurnSpec(_Frozen):
    turn_id: Identifier
    seq: int = Field(ge=1)
    title: NonEmpty
    # A path relative to the defining layer's root, or an artifact id "sha256:<hex>".
    prompt_ref: NonEmpty
    system_prompt_ref: NonEmpty | None = None
    input_refs: list[Identifier] = []
    output_type: Identifier
    output_format: Literal["json", "markdown"] = "json"
    gate_id: Identifier | None = None
    retry_limit: int = Field(default=1, ge=0)
    timeout_ms: int = Field(default=120_000, gt=0)

    @field_validator("input_refs")
    @classmethod
    def _unique_inputs(cls, value: list[str]) -> list[str]:
        return _unique(value, "input_refs")

    @field_validator("output_type")
    @classmethod
    def _not_context(cls, value: str) -> str:
        if value == CONTEXT_INPUT:
            raise ValueError(f"{CONTEXT_INPUT!r} is the built-in input and cannot be an output_type")
        return value


class GateSpec(_Frozen):
    gate_id: Identifier
    gate_type: Identifier
    required_fields: list[NonEmpty] = []
    rules: dict[str, Any] = {}
    fail_on_violation: bool = True


class ArtifactPolicy(_Frozen):
    store_output: bool = True
    store_prompt_render: bool = True
    store_context_payload: bool = True
    max_output_bytes: int = Field(default=262_144, gt=0)


class FailurePolicy(_Frozen):
    mode: Literal["stop_on_gate_fail", "continue"] = "stop_on_gate_fail"
    resume_from_failed_turn: bool = True
    stop_on_gate_fail: bool = True


class Profile(_Frozen):
    workflow_id: Identifier
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    title: NonEmpty
    description: str
    thread_policy: ThreadPolicy
    turns: list[TurnSpec] = Field(min_length=1)
    gates: list[GateSpec]
    artifact_policy: ArtifactPolicy
    failure_policy: FailurePolicy
    thread_profile: NonEmpty | None = None
    target_agent_id: NonEmpty | None = None
    target_frame_type: Identifier | None = None
    final_artifact_type: Identifier | None = None

    def ordered_turns(self) -> list[TurnSpec]:
        return sorted(self.turns, key=lambda turn: turn.seq)

    def turn(self, turn_id: str) -> TurnSpec:
        for turn in self.turns:
            if turn.turn_id == turn_id:
                return turn
        raise KeyError(turn_id)

    def gate(self, gate_id: str) -> GateSpec:
        for gate in self.gates:
            if gate.gate_id == gate_id:
                return gate
        raise KeyError(gate_id)
