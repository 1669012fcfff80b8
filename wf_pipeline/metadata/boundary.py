"""The one write boundary for frame metadata.

Everything that persists frame metadata passes it through
``FrameMetadataBoundary.validate`` first. The whole mapping is checked before a
result is returned, so a rejected mapping leaves nothing to write. Checks, per key in
sorted order, then for the frame:

1. the key is registered (``METADATA_UNKNOWN_KEY``);
2. the key is not ephemeral, those are never persisted (``METADATA_EPHEMERAL_KEY``);
3. the value is not raw text (``METADATA_RAW_TEXT_REJECTED``): it spans lines, or it
   contains one of the caller's forbidden texts (the raw prompt and context at hand),
   or, being longer than ``RAW_TEXT_MIN_OVERLAP`` characters, occurs inside one. A
   well-formed digest under a digest key is never raw text: payloads may quote digests;
4. the value has its key's schema type (``METADATA_INVALID_VALUE``);
5. the value fits its key's budget, then all keys and values fit the frame budget
   (``METADATA_BUDGET_EXCEEDED``).

Errors name keys (or a digest of a key that is not name-shaped) and sizes, never values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from wf_pipeline.errors import (
    METADATA_EPHEMERAL_KEY,
    METADATA_INVALID_VALUE,
    METADATA_RAW_TEXT_REJECTED,
    METADATA_UNKNOWN_KEY,
    MetadataError,
)
from wf_pipeline.metadata.budgets import Budgets, check_artifact_budget
from wf_pipeline.metadata.canonical import digest_text, is_digest
from wf_pipeline.metadata.registry import (
    FRAME_KEY_REGISTRY,
    NAME_RE,
    KeyDescriptor,
    KeyRegistry,
    matches_schema,
    spans_lines,
)

__all__ = ["RAW_TEXT_MIN_OVERLAP", "FrameMetadataBoundary", "check_artifact_budget"]

# A value shorter than this may legitimately occur inside a prompt (an agent id, a model
# name); a longer one found verbatim in the prompt or context was copied from it.
RAW_TEXT_MIN_OVERLAP = 32


def _key_label(key: object) -> str:
    """A loggable name for ``key``: itself when name-shaped, else a digest of it."""
    if isinstance(key, str) and NAME_RE.fullmatch(key):
        return key
    return digest_text(key if isinstance(key, str) else repr(key))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


@contextmanager
def _sized(value: object) -> Iterator[None]:
    """Add the value's UTF-8 size (``size``, bytes) to a key's rejection: telemetry counts it, never the value."""
    try:
        yield
    except MetadataError as exc:
        if isinstance(value, str):
            exc.details.setdefault("size", _utf8_size(value))
        raise


class FrameMetadataBoundary:
    """Checks a frame's metadata against a key registry and byte budgets before it is written.

    Args:
        registry: the keys that may be persisted (default `FRAME_KEY_REGISTRY`).
        budgets: the byte budgets per key and per frame (default `Budgets()`).

    The checks and their codes are those listed in this module's docstring.
    """

    def __init__(self, registry: KeyRegistry = FRAME_KEY_REGISTRY, budgets: Budgets | None = None) -> None:
        self.registry = registry
        self.budgets = budgets or Budgets()

    def validate(self, metadata: Mapping[str, str], forbidden_texts: Iterable[str] = ()) -> dict[str, str]:
        """Return a new, key-sorted copy of ``metadata`` once every key and value passes.

        Args:
            metadata: key -> string value, as it would be written.
            forbidden_texts: the raw prompt and context texts at hand; a value holding one
                (or a long value found inside one) is raw text.

        Returns:
            The accepted mapping, sorted by key; nothing is returned unless all of it passes.

        Raises:
            MetadataError: in the order of this module's docstring: ``METADATA_UNKNOWN_KEY``,
                ``METADATA_EPHEMERAL_KEY``, ``METADATA_RAW_TEXT_REJECTED``,
                ``METADATA_INVALID_VALUE`` (also for a ``metadata`` that is not a mapping),
                ``METADATA_BUDGET_EXCEEDED`` (figures: sizes and limits in bytes). Each names
                the key (or a digest of it), never the value; a key's rejection carries the
                key (``details["key"]``) and its value's UTF-8 size (``details["size"]``,
                bytes), a frame's rejection ``scope="frame"`` and the frame's size.
        """
        if not isinstance(metadata, Mapping):
            raise MetadataError(
                METADATA_INVALID_VALUE, f"frame metadata must be a mapping, got {type(metadata).__name__}"
            )
        # Empty texts would be "contained" in every value.
        forbidden = tuple(text for text in forbidden_texts if isinstance(text, str) and text.strip())
        for key in metadata:
            with _sized(metadata[key]):
                self._descriptor(key)
        accepted: dict[str, str] = {}
        frame_bytes = 0
        for key in sorted(metadata):
            value = metadata[key]
            with _sized(value):
                descriptor = self._descriptor(key)
                self._check_value(descriptor, value, forbidden)
            accepted[key] = value
            frame_bytes += _utf8_size(key) + _utf8_size(value)
        self.budgets.check_frame(frame_bytes)
        return accepted

    def _descriptor(self, key: object) -> KeyDescriptor:
        descriptor = self.registry.get(key) if isinstance(key, str) else None
        if descriptor is None:
            label = _key_label(key)
            raise MetadataError(
                METADATA_UNKNOWN_KEY, f"frame metadata key {label} is not registered", key=label
            )
        if not descriptor.persisted:
            raise MetadataError(
                METADATA_EPHEMERAL_KEY,
                f"frame metadata key {key} is ephemeral and never persisted",
                key=key,
            )
        return descriptor

    def _check_value(self, descriptor: KeyDescriptor, value: object, forbidden: tuple[str, ...]) -> None:
        key = descriptor.name
        if not isinstance(value, str):
            raise MetadataError(
                METADATA_INVALID_VALUE,
                f"value of {key} must be a string, got {type(value).__name__}",
                key=key,
            )
        if self._is_raw_text(descriptor, value, forbidden):
            raise MetadataError(
                METADATA_RAW_TEXT_REJECTED,
                f"value of {key} looks like raw prompt or context text ({_utf8_size(value)} bytes)",
                key=key,
            )
        if not matches_schema(descriptor.schema_type, value):
            raise MetadataError(
                METADATA_INVALID_VALUE, f"value of {key} is not a valid {descriptor.schema_type}", key=key
            )
        self.budgets.check_key(descriptor, _utf8_size(value))

    @staticmethod
    def _is_raw_text(descriptor: KeyDescriptor, value: str, forbidden: tuple[str, ...]) -> bool:
        if spans_lines(value):
            return True
        if descriptor.schema_type == "digest" and is_digest(value):
            return False
        return any(
            text in value or (len(value) > RAW_TEXT_MIN_OVERLAP and value in text) for text in forbidden
        )
