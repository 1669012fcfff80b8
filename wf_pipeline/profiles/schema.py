"""The profile schema: one YAML workflow declaration as frozen pydantic models.

These models check shape only (types, bounds, identifier syntax, unknown keys, values
that contradict each other inside one policy). Types are checked in pydantic's strict mode:
a YAML value of another type is ``PROFILE_SCHEMA_INVALID`` at its field, never converted. Checks that relate parts of a profile to
each other or to the outside world (seq order, gate references, input refs, prompt files,
gate types, what the artifact policy may leave unstored) live in the loader, because each
of them has its own stable error code. A validator here that has a code of its own raises
a ``PydanticCustomError`` whose type is that code; the loader reports it under that code.
docs/profiles.md describes every field.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from wf_pipeline.errors import (
    PROFILE_DEDUPE_KEY_INCOMPLETE,
    PROFILE_FAILURE_POLICY_CONFLICT,
    PROFILE_OUTPUT_PATH_ABSOLUTE,
    PROFILE_OUTPUT_PATH_ESCAPES,
    PROFILE_OUTPUT_PATH_INVALID,
    PROFILE_OUTPUT_UNKNOWN_FORMAT,
    PROFILE_SCHEMA_INVALID,
    PROFILE_UNKNOWN_DEDUPE_FIELD,
)
from wf_pipeline.metadata.records import THREAD_KEY_FIELDS, thread_key_problems
from wf_pipeline.text.tokens import TokenEncoding

# Identifiers become Dagster asset keys, op names and check names, so they stay
# lowercase snake case.
IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]*$"
VERSION_PATTERN = r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$"
# The input ref every turn may name: the target directory's context payload.
CONTEXT_INPUT = "context"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    # Strict: a YAML value of the wrong type is an error, never coerced (pydantic's lax mode
    # would read `true` as the integer 1, `0` or "no" as false, and 7 as the string "7").
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _unique(values: list[str], what: str) -> list[str]:
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(duplicates)}")
    return values


class ThreadPolicy(_Frozen):
    """How threads are identified and retried.

    Attributes:
        start_conditions: must be empty; no start condition is evaluated, so a non-empty
            list fails with ``PROFILE_SCHEMA_INVALID`` rather than being silently ignored.
        dedupe_key_fields: the fields whose values make a thread's identity (see
            `wf_pipeline.metadata.records.THREAD_KEY_FIELDS`); an unknown name fails with
            ``PROFILE_UNKNOWN_DEDUPE_FIELD``, a key without ``workflow_id`` and
            ``target_node_id`` with ``PROFILE_DEDUPE_KEY_INCOMPLETE``.
        max_turn_retries: cap on every turn's ``retry_limit`` and ``retry.attempts``
            (`wf_pipeline.profiles.retry`).
    """

    start_conditions: list[Any] = []
    dedupe_key_fields: list[NonEmpty] = Field(
        default_factory=lambda: list(THREAD_KEY_FIELDS[:3]), min_length=1
    )
    max_turn_retries: int = Field(default=2, ge=0)

    @field_validator("start_conditions")
    @classmethod
    def _no_start_conditions(cls, value: list[Any]) -> list[Any]:
        if value:
            raise PydanticCustomError(
                PROFILE_SCHEMA_INVALID,
                "start_conditions are not evaluated; leave the list empty (got {count} conditions)",
                {"count": len(value)},
            )
        return value

    @field_validator("dedupe_key_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        _unique(value, "dedupe_key_fields")
        unknown, missing = thread_key_problems(value)
        if unknown:
            raise PydanticCustomError(
                PROFILE_UNKNOWN_DEDUPE_FIELD,
                "dedupe_key_fields names unknown fields {unknown}; allowed: {allowed}",
                {"unknown": unknown, "allowed": list(THREAD_KEY_FIELDS)},
            )
        if missing:
            raise PydanticCustomError(
                PROFILE_DEDUPE_KEY_INCOMPLETE,
                "dedupe_key_fields must include {missing}",
                {"missing": missing},
            )
        return value


class TurnSpec(_Frozen):
    """One turn of a profile, as docs/profiles.md describes it field by field.

    ``when`` is the optional branch condition (docs/specs/conditional-branches.md): a turn
    whose condition is false is recorded ``skipped`` with the decision, without a call.
    """

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
    # Attempts, backoff and retryable codes (`wf_pipeline.profiles.retry`); its shape is checked
    # by the loader, which names the turn and the file in a code of its own (PROFILE_RETRY_*).
    retry: Any = None
    # A branch condition (`wf_pipeline.profiles.expressions`): the turn runs only when it is
    # true over the outputs and gate verdicts upstream of it; checked by the loader
    # (PROFILE_WHEN_*), recorded with every decision (turn records' ``branch``).
    when: NonEmpty | None = None

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
    """Which of a turn's bytes are kept in the CAS, and how large an output may be.

    Attributes:
        store_output: keep every turn output. ``false`` fails to load with
            ``PROFILE_ARTIFACT_POLICY_CONFLICT``: later turns, turn reuse, the asset's data
            version and the output sink all read outputs back.
        store_prompt_render: keep the rendered user and system prompts (the unrendered
            template is kept either way; the frame carries the prompt digest either way).
        store_context_payload: keep the context snapshot. ``false`` fails to load with
            ``PROFILE_ARTIFACT_POLICY_CONFLICT`` when a turn reads ``context``, since later
            turns, retries and resumes read that snapshot back.
        max_output_bytes: largest output, in bytes of canonical UTF-8; a larger one is a
            failed attempt with ``RUN_OUTPUT_TOO_LARGE``.
        max_prompt_bytes: largest rendered prompt (system plus user prompt), in bytes of
            canonical UTF-8. The loader checks every turn's worst case against it
            (``PROFILE_BUDGET_TOO_SMALL``), so a run never meets an over-budget prompt.
        max_context_bytes: largest context payload (its canonical JSON), in bytes. The
            context builder fits every directory's payload into it: whole files, else
            per-file extracts, else a documented selection (`wf_pipeline.tree.context`).
        max_context_tokens: the model's context window in tokens (prompt and output), or
            None (no window checked). Output tokens are bounded by ``max_output_bytes``:
            every token of a byte-level BPE (GPT-2, cl100k, o200k, Llama 3) covers at
            least one byte, so N bytes are at most N tokens.
        tokenizer: how prompt tokens are counted against ``max_context_tokens``. None:
            bounded by bytes like the output, so the loader requires
            ``max_prompt_bytes`` + ``max_output_bytes`` <= ``max_context_tokens`` and no
            prompt can overflow the window (conservative: code averages about 4 bytes a
            token). ``o200k_base`` or ``cl100k_base``: each rendered prompt is counted
            with that encoding (`wf_pipeline.text.tokens`, offline) before the call; the
            loader requires only ``max_output_bytes`` < ``max_context_tokens``, and a
            prompt over the window is ``METADATA_BUDGET_EXCEEDED`` before any call.

    The budgets are operational limits, not content: they are left out of the profile's
    code version (`wf_pipeline.profiles.loader.LoadedProfile.code_version`), so raising
    one keeps every thread and lets ``wf resume`` finish a thread that failed on it. A
    thread keeps its recorded context snapshot; the runtime checks that snapshot against
    the current ``max_context_bytes`` before every turn (``METADATA_BUDGET_EXCEEDED``).
    """

    store_output: bool = True
    store_prompt_render: bool = True
    store_context_payload: bool = True
    max_output_bytes: int = Field(default=262_144, gt=0)
    max_prompt_bytes: int = Field(default=1_048_576, gt=0)
    max_context_bytes: int = Field(default=393_216, gt=0)
    max_context_tokens: int | None = Field(default=None, gt=0)
    tokenizer: TokenEncoding | None = None


FailureMode = Literal["stop_on_gate_fail", "continue"]
# The mode each value of the older boolean switch stands for.
_MODE_OF_SWITCH: dict[bool, FailureMode] = {True: "stop_on_gate_fail", False: "continue"}


class FailurePolicy(_Frozen):
    """What a failing gate does to its thread, and where a resumed thread starts again.

    Attributes:
        mode: ``stop_on_gate_fail`` (a failing gate fails the turn and the thread; later
            turns do not run) or ``continue`` (the verdict is recorded, the turn completes,
            the thread goes on).
        resume_from_failed_turn: ``wf resume`` re-runs a failed thread from its failed turn
            (true) or from its first turn (false); see `wf_pipeline.runtime.failure`.

    The boolean ``stop_on_gate_fail`` key of earlier profiles is still accepted as another
    spelling of ``mode``; it is not stored, and `stop_on_gate_fail` reads it back from
    ``mode``. Given together with a ``mode`` it contradicts, loading fails with
    ``PROFILE_FAILURE_POLICY_CONFLICT``.
    """

    mode: FailureMode = "stop_on_gate_fail"
    resume_from_failed_turn: bool = True

    @model_validator(mode="before")
    @classmethod
    def _switch_as_mode(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "stop_on_gate_fail" not in data:
            return data
        data = dict(data)
        switch = data.pop("stop_on_gate_fail")
        if not isinstance(switch, bool):
            raise PydanticCustomError(
                PROFILE_SCHEMA_INVALID,
                f"stop_on_gate_fail must be true or false, not {switch!r}",
                {"value": switch},
            )
        implied = _MODE_OF_SWITCH[switch]
        mode = data.setdefault("mode", implied)
        # A mode that is no mode at all is the field's own error (PROFILE_SCHEMA_INVALID).
        if mode in _MODE_OF_SWITCH.values() and mode != implied:
            raise PydanticCustomError(
                PROFILE_FAILURE_POLICY_CONFLICT,
                f"mode {mode!r} contradicts stop_on_gate_fail: {str(switch).lower()} (which means mode {implied!r})",
                {"mode": mode, "switch": switch, "implied": implied},
            )
        return data

    @property
    def stop_on_gate_fail(self) -> bool:
        """True when a failing gate stops its thread (``mode: stop_on_gate_fail``)."""
        return self.mode == "stop_on_gate_fail"


class Activation(_Frozen):
    """One entry of a profile's ``activates:``: start another workflow when a condition holds.

    Attributes:
        workflow: the workflow id to start; the catalog must define it
            (``PROFILE_ACTIVATION_UNKNOWN_WORKFLOW``).
        when: the condition, one of `wf_pipeline.profiles.activations.CONDITIONS`
            (``PROFILE_ACTIVATION_UNKNOWN_CONDITION``).
        target: where the activated workflow runs; only ``root`` (the tree's root directory,
            ``PROFILE_ACTIVATION_BAD_TARGET`` otherwise).

    The loader checks the values (each with its own code) and the activation graph of the
    whole catalog (``PROFILE_ACTIVATION_CYCLE``); docs/profiles.md describes the block.
    """

    workflow: NonEmpty
    when: NonEmpty
    target: NonEmpty = "root"


TargetKind = Literal["directory", "root"]
ContextScope = Literal["directory", "tree"]
# What a declared output may be written as; a json output holds a json turn's output, the
# others a markdown turn's (`wf_pipeline.profiles.loader` checks the pairing).
OUTPUT_FORMATS: tuple[str, ...] = ("markdown", "json", "text")
# The longest file or folder name most file systems take (NAME_MAX), in bytes of UTF-8.
_NAME_MAX_BYTES = 255


class TargetsSpec(_Frozen):
    """Which directories of a tree a workflow runs on (one thread and one Dagster partition each).

    Attributes:
        kind: ``directory`` (the default, and what a profile without ``targets:`` gets):
            every documentable directory, bottom-up; ``root``: the tree's root directory
            only (when the tree has anything to document). See docs/profiles.md.
    """

    kind: TargetKind = "directory"


class ContextSpec(_Frozen):
    """What a thread's ``context`` input covers.

    Attributes:
        scope: ``directory`` (the default): the target directory's own files and its
            children's head frames (`wf_pipeline.tree.build_context`); ``tree``: every
            readable file below the target, each as the extract the workflow registered
            for its frame type (`wf_pipeline.tree.build_tree_context`).
    """

    scope: ContextScope = "directory"


class OutputSpec(_Frozen):
    """One file a completed thread's final output is written to (`wf_pipeline.runtime.sinks.DeclaredOutputSink`).

    Attributes:
        path: a POSIX path relative to the target directory (``docs/ARCHITECTURE.md``);
            absolute (``PROFILE_OUTPUT_PATH_ABSOLUTE``), empty, ending in ``/`` or with a
            ``..`` segment (``PROFILE_OUTPUT_PATH_ESCAPES``), or with a control character, a
            name over 255 bytes or a ``.git`` segment (``PROFILE_OUTPUT_PATH_INVALID``) fails
            to load.
        format: ``markdown``, ``json`` or ``text`` (`OUTPUT_FORMATS`); another fails with
            ``PROFILE_OUTPUT_UNKNOWN_FORMAT``.
        placement: ``mirrored`` (the default): where the tree's outputs go (its output
            folder, or the tree itself when synced ``--in-place``), as READMEs are;
            ``in_place``: always into the scanned tree itself.
    """

    path: NonEmpty
    format: str = "markdown"
    placement: Literal["in_place", "mirrored"] = "mirrored"

    @field_validator("path")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        if value.startswith("/") or posixpath.isabs(value) or (len(value) > 1 and value[1] == ":"):
            raise PydanticCustomError(
                PROFILE_OUTPUT_PATH_ABSOLUTE,
                "output path '{output_path}' is absolute; give it relative to the target directory",
                {"output_path": value},
            )
        parts = value.split("/")
        if value.endswith("/") or "\\" in value or any(part in ("", ".", "..") for part in parts):
            raise PydanticCustomError(
                PROFILE_OUTPUT_PATH_ESCAPES,
                "output path '{output_path}' must name a file below the target directory "
                "(no '..', '.', empty segments or backslashes)",
                {"output_path": value},
            )
        # What no file system, or no tree, should receive: control characters (NUL ends a C
        # path), a name over NAME_MAX (255 bytes on Linux, macOS and Windows), a Git folder.
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            problem = "holds a control character"
        elif any(len(part.encode("utf-8")) > _NAME_MAX_BYTES for part in parts):
            problem = f"has a name longer than {_NAME_MAX_BYTES} bytes"
        elif any(part.casefold() == ".git" for part in parts):
            problem = "is inside a .git folder"
        else:
            return value
        raise PydanticCustomError(
            PROFILE_OUTPUT_PATH_INVALID,
            "output path {shown} {problem}",
            {"output_path": value, "shown": ascii(value[:80]), "problem": problem},
        )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in OUTPUT_FORMATS:
            raise PydanticCustomError(
                PROFILE_OUTPUT_UNKNOWN_FORMAT,
                "output format '{format}' is unknown; known: {known}",
                {"format": value, "known": list(OUTPUT_FORMATS)},
            )
        return value


class Profile(_Frozen):
    """One workflow declaration, as docs/profiles.md describes it field by field.

    Cross-references (unique ids and seqs, gate and input refs, prompt refs, what the
    artifact policy may leave unstored) are checked by the loader, not here.
    """

    workflow_id: Identifier
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    title: NonEmpty
    description: str
    thread_policy: ThreadPolicy
    turns: list[TurnSpec] = Field(min_length=1)
    gates: list[GateSpec]
    artifact_policy: ArtifactPolicy
    failure_policy: FailurePolicy
    # No thread_profile: it was never read, so a profile that sets it fails to load
    # (PROFILE_SCHEMA_INVALID at "thread_profile") instead of being silently ignored.
    target_agent_id: NonEmpty | None = None
    target_frame_type: Identifier | None = None
    final_artifact_type: Identifier | None = None
    # Retention windows per artifact class (`wf_pipeline.profiles.retention`); checked by the
    # loader, left out of the code version and of thread identity. Values are strings, except
    # ``mode``, which may map classes to modes.
    retention: dict[str, str | dict[str, str]] | None = None
    # Encryption level per artifact class (`wf_pipeline.profiles.encryption`); checked by the
    # loader, left out of the code version and of thread identity.
    encryption: dict[str, Any] | None = None
    # Redaction preset and opt-outs (`wf_pipeline.profiles.redaction`); checked by the loader,
    # left out of the code version and of thread identity.
    redaction: dict[str, Any] | None = None
    # Workflows this one starts when a condition holds (`wf_pipeline.profiles.activations`);
    # left out of the code version and of thread identity.
    activates: list[Activation] = []
    # Which directories get a thread, what their context covers, and which files the final
    # output is written to. Left out of the code version: they change where a thread runs
    # and where its output goes, not what a turn is asked.
    targets: TargetsSpec = TargetsSpec()
    context: ContextSpec = ContextSpec()
    outputs: list[OutputSpec] | None = None

    @property
    def target_kind(self) -> TargetKind:
        """``directory`` or ``root`` (`TargetsSpec`)."""
        return self.targets.kind

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
