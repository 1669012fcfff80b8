"""Structured payloads that cross domain boundaries, and the registry of output schemas.

The context payload is what the runtime hands a provider and a gate for one target
directory. Each workflow's output schemas (the strict shapes of its turns' outputs)
live with the workflow, which registers them here by output type; providers produce
them, gates parse and judge them, the runtime stores them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wf_pipeline.errors import OUTPUT_NOT_JSON, OUTPUT_SCHEMA_VIOLATION, OUTPUT_TYPE_DUPLICATE, MetadataError
from wf_pipeline.metadata.canonical import parse_json
from wf_pipeline.registry import Registry

# v3: a file's ``text`` or a child's ``head_frame`` may be an extract (``extracted: true``)
# and either may be left out to fit the budget (``omitted: "budget"``); v2: a child
# directory's text is its head frame, whatever the workflow's frame type; v1 named it
# after one workflow's output.
CONTEXT_SCHEMA = "wf.context.v3"
# The input_ref under which a turn receives its target's context payload.
CONTEXT_REF = "context"

# "budget": readable, but left out so the payload fits artifact_policy.max_context_bytes.
OmittedReason = Literal["binary", "oversized", "unreadable", "budget"]


class StrictPayload(BaseModel):
    """Base of every payload schema: immutable, and unknown fields are a validation error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ContextFile(StrictPayload):
    """One file directly inside the target directory.

    ``path`` is POSIX and relative to the scanned root. ``text`` is None exactly when
    ``omitted`` says why (binary, oversized or unreadable files never enter prompts;
    ``budget``: left out to fit the context budget). ``extracted`` is true when ``text``
    is the workflow's extract of the file (whole lines of it: signatures, docstrings,
    headings) rather than the whole file.
    """

    path: str
    name: str
    size: int
    language: str | None = None
    text: str | None = None
    extracted: Literal[True] | None = None
    omitted: OmittedReason | None = None

    @model_validator(mode="after")
    def _text_xor_omitted(self) -> ContextFile:
        if (self.text is None) == (self.omitted is None):
            raise ValueError("exactly one of text and omitted must be set")
        if self.extracted and self.text is None:
            raise ValueError("an extracted file has text")
        return self


class ContextChild(StrictPayload):
    """A child directory, with the text of its head frame (the frame of the workflow's
    frame type produced for it earlier in the run, bottom-up), or None when it has none.

    ``extracted`` is true when ``head_frame`` is an extract of that frame; ``omitted`` is
    ``budget`` when the child has a frame that was left out to fit the context budget.
    """

    path: str
    name: str
    node_id: str
    head_frame: str | None = None
    extracted: Literal[True] | None = None
    omitted: Literal["budget"] | None = None

    @model_validator(mode="after")
    def _frame_or_omitted(self) -> ContextChild:
        if self.omitted is not None and self.head_frame is not None:
            raise ValueError("an omitted child has no head_frame")
        if self.extracted and self.head_frame is None:
            raise ValueError("an extracted child has a head_frame")
        return self


class ContextTarget(StrictPayload):
    """The directory a thread documents: POSIX path relative to the scanned root, name, node id."""

    path: str  # "." for the scanned root
    name: str
    node_id: str


class ContextPayload(StrictPayload):
    """Everything a turn sees of its target directory: direct files and direct children."""

    # v2 payloads (snapshots recorded by earlier releases) are v3 payloads without
    # extracts or budget omissions, so resumed threads still read them.
    schema_id: Literal["wf.context.v3", "wf.context.v2"] = Field(default=CONTEXT_SCHEMA, alias="schema")
    target: ContextTarget
    files: tuple[ContextFile, ...] = ()
    children: tuple[ContextChild, ...] = ()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def file(self, path: str) -> ContextFile | None:
        """The direct file at ``path`` (relative to the scanned root), or None."""
        return next((f for f in self.files if f.path == path), None)

    def child(self, path: str) -> ContextChild | None:
        """The direct child directory at ``path``, or None."""
        return next((c for c in self.children if c.path == path), None)

    def text_at(self, path: str) -> str | None:
        """The text the payload holds for ``path``: a file's text or a child's head frame.

        None for an unknown path, an omitted file, or a child without a head frame.
        """
        found = self.file(path)
        if found is not None:
            return found.text
        child = self.child(path)
        return child.head_frame if child is not None else None

    def map_texts(self, view: Callable[[str | None, str], str]) -> ContextPayload:
        """This payload with every file text and child head frame passed through ``view``.

        Args:
            view: ``(file name, or None for a head frame; text) -> text`` (a
                `wf_pipeline.tree.TextView`, such as the masked view).

        Returns:
            A new payload (same target, schema and omissions); ``self`` when ``view``
            changed no text.

        Raises nothing of its own; whatever ``view`` raises.
        """
        files = tuple(
            file if file.text is None else file.model_copy(update={"text": view(file.name, file.text)})
            for file in self.files
        )
        children = tuple(
            child
            if child.head_frame is None
            else child.model_copy(update={"head_frame": view(None, child.head_frame)})
            for child in self.children
        )
        if all(new.text == old.text for new, old in zip(files, self.files, strict=True)) and all(
            new.head_frame == old.head_frame for new, old in zip(children, self.children, strict=True)
        ):
            return self
        return self.model_copy(update={"files": files, "children": children})

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready form (aliases, no None fields), the shape stored as an artifact."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- output schemas, registered by the workflows ------------------------------------

_OUTPUT_MODELS: Registry[str, type[StrictPayload]] = Registry(
    "payload schema", key="output type", duplicate=OUTPUT_TYPE_DUPLICATE
)


def register_output_model(output_type: str, model: type[StrictPayload]) -> None:
    """Declare ``model`` as the schema of outputs of type ``output_type``.

    Registering the same model again is a no-op.

    Args:
        output_type: a turn's output type, as profiles declare it.
        model: the strict schema outputs of that type are parsed with (`parse_json_output`).

    Raises:
        MetadataError: ``OUTPUT_TYPE_DUPLICATE`` when another model already owns
            ``output_type``.
    """
    _OUTPUT_MODELS.register(output_type, model)


def output_model(output_type: str) -> type[StrictPayload] | None:
    """The schema registered for ``output_type``, or None (free-form output such as markdown)."""
    return _OUTPUT_MODELS.find(output_type)


def parse_json_output(text: str, model: type[StrictPayload]) -> Any:
    """Parse model output strictly: one JSON object that validates against ``model``.

    Returns the validated ``model`` instance. Raises MetadataError(OUTPUT_NOT_JSON |
    OUTPUT_SCHEMA_VIOLATION, with ``fields``). Nothing is inferred from field names
    appearing in free text.
    """
    try:
        raw = parse_json(text)
    except json.JSONDecodeError as exc:
        # The parser's wording and position only: the document itself never enters the message.
        raise MetadataError(
            OUTPUT_NOT_JSON,
            f"output is not a JSON document ({exc.msg} at line {exc.lineno} column {exc.colno}, char {exc.pos})",
            line=exc.lineno,
            column=exc.colno,
            position=exc.pos,
        ) from None
    except TypeError:
        raise MetadataError(OUTPUT_NOT_JSON, f"output is a {type(text).__name__}, not JSON text") from None
    if not isinstance(raw, dict):
        raise MetadataError(OUTPUT_NOT_JSON, "output is not a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()})
        raise MetadataError(
            OUTPUT_SCHEMA_VIOLATION, f"output does not match {model.__name__}", fields=fields
        ) from None
