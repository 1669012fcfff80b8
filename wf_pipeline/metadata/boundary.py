"""The one write boundary for frame metadata.

Everything that persists frame metadata passes it through
``FrameMetadataBoundary.validate`` first, and every annotation change through
``FrameMetadataBoundary.validate_annotations``. A write names the domain making it
(`wf_pipeline.metadata.registry.OWNER_DOMAINS`); a frame's metadata is one write per
contributing domain. The whole write is checked before a result is returned, so a
rejected write leaves nothing to write. Checks, per key in sorted order, then for the
frame:

1. the key is registered (``METADATA_UNKNOWN_KEY``);
2. the writing domain owns the key (``METADATA_KEY_NOT_OWNED``): a domain writes only
   the keys the registry gives it;
3. the key is not ephemeral, those are never persisted (``METADATA_EPHEMERAL_KEY``);
   for an annotation change, the key is of the annotation class
   (``METADATA_KEY_IMMUTABLE``);
4. the value is not raw text (``METADATA_RAW_TEXT_REJECTED``): it spans lines, or it
   contains one of the caller's forbidden texts (the raw prompt and context at hand),
   or, being longer than ``RAW_TEXT_MIN_OVERLAP`` characters, occurs inside one. A
   well-formed digest under a digest key is never raw text: payloads may quote digests;
5. the value has its key's schema type (``METADATA_INVALID_VALUE``);
6. the value fits its key's budget, then all keys and values fit the frame budget
   (``METADATA_BUDGET_EXCEEDED``; annotations are checked per key only: the view holds
   one value per key, each within its key's budget).

Errors name keys (or a digest of a key that is not name-shaped) and sizes, never values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from wf_pipeline.errors import (
    METADATA_EPHEMERAL_KEY,
    METADATA_INVALID_VALUE,
    METADATA_KEY_IMMUTABLE,
    METADATA_KEY_NOT_OWNED,
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

__all__ = ["RAW_TEXT_MIN_OVERLAP", "DomainWrites", "FrameMetadataBoundary", "check_artifact_budget"]

#: One write: owner domain -> the keys and values that domain writes.
DomainWrites = Mapping[str, Mapping[str, str]]

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
        registry: the keys that may be persisted and their owners (default `FRAME_KEY_REGISTRY`).
        budgets: the byte budgets per key and per frame (default `Budgets()`).

    The checks and their codes are those listed in this module's docstring.
    """

    def __init__(self, registry: KeyRegistry = FRAME_KEY_REGISTRY, budgets: Budgets | None = None) -> None:
        self.registry = registry
        self.budgets = budgets or Budgets()

    def validate(self, writes: DomainWrites, forbidden_texts: Iterable[str] = ()) -> dict[str, str]:
        """Return the frame's metadata, key-sorted, once every domain's keys and values pass.

        Args:
            writes: owner domain -> the key -> string values that domain writes on the frame
                (e.g. ``{"agent": {"model": ...}, "workflow": {"prompt_link_id": ...}}``).
            forbidden_texts: the raw prompt and context texts at hand; a value holding one
                (or a long value found inside one) is raw text.

        Returns:
            The accepted keys and values of all domains as one mapping, sorted by key;
            nothing is returned unless all of it passes.

        Raises:
            MetadataError: in the order of this module's docstring: ``METADATA_UNKNOWN_KEY``,
                ``METADATA_KEY_NOT_OWNED`` (figures: key, domain, owner),
                ``METADATA_EPHEMERAL_KEY``, ``METADATA_RAW_TEXT_REJECTED``,
                ``METADATA_INVALID_VALUE`` (also for ``writes`` that are not a mapping of
                mappings), ``METADATA_BUDGET_EXCEEDED`` (figures: sizes and limits in
                bytes). Each names the key (or a digest of it), never the value; a key's
                rejection carries the key (``details["key"]``) and its value's UTF-8 size
                (``details["size"]``, bytes), a frame's rejection ``scope="frame"`` and the
                frame's size.
        """
        metadata = self._owned(writes)
        # Empty texts would be "contained" in every value.
        forbidden = tuple(text for text in forbidden_texts if isinstance(text, str) and text.strip())
        accepted: dict[str, str] = {}
        frame_bytes = 0
        for key in sorted(metadata):
            value = metadata[key]
            with _sized(value):
                descriptor = self._persisted(key)
                self._check_value(descriptor, value, forbidden)
            accepted[key] = value
            frame_bytes += _utf8_size(key) + _utf8_size(value)
        self.budgets.check_frame(frame_bytes)
        return accepted

    def validate_annotations(
        self, domain: str, changes: Mapping[str, str | None], forbidden_texts: Iterable[str] = ()
    ) -> dict[str, str | None]:
        """Return ``domain``'s annotation changes, key-sorted, once every key and value passes.

        Args:
            domain: the owner domain making the changes.
            changes: key -> new value, or None to clear the key.
            forbidden_texts: raw texts at hand, as for `validate`.

        Returns:
            The accepted changes sorted by key; nothing is returned unless all pass.

        Raises:
            MetadataError: ``METADATA_UNKNOWN_KEY``, ``METADATA_KEY_NOT_OWNED``,
                ``METADATA_KEY_IMMUTABLE`` (an identity, attested or ephemeral key: only
                annotation keys change after a frame is written), ``METADATA_RAW_TEXT_REJECTED``,
                ``METADATA_INVALID_VALUE``, ``METADATA_BUDGET_EXCEEDED`` (per key), each with
                the key and size as in `validate`.
        """
        if not isinstance(changes, Mapping):
            raise MetadataError(
                METADATA_INVALID_VALUE, f"annotation changes must be a mapping, got {type(changes).__name__}"
            )
        cleared = {key for key, value in changes.items() if value is None}
        self._owned({domain: {key: "" if key in cleared else value for key, value in changes.items()}})
        forbidden = tuple(text for text in forbidden_texts if isinstance(text, str) and text.strip())
        accepted: dict[str, str | None] = {}
        for key in sorted(changes):
            value = changes[key]
            with _sized(value):
                descriptor = self._descriptor(key)
                if descriptor.mutability != "annotation":
                    raise MetadataError(
                        METADATA_KEY_IMMUTABLE,
                        f"key {key} is {descriptor.mutability}: only annotation keys change after a frame is written",
                        key=key,
                        mutability=descriptor.mutability,
                    )
                if value is not None:
                    self._check_value(descriptor, value, forbidden)
            accepted[key] = value
        return accepted

    def _owned(self, writes: object) -> dict[str, str]:
        """Every domain's keys merged into one mapping, once all are registered and owned by their writer."""
        if not isinstance(writes, Mapping) or not all(isinstance(part, Mapping) for part in writes.values()):
            raise MetadataError(
                METADATA_INVALID_VALUE,
                f"metadata writes must map each domain to its keys, got {type(writes).__name__}",
            )
        # Known keys first, across every domain: an unregistered key is reported as such
        # even when it also sits under a domain that could not own it.
        for part in writes.values():
            for key in part:
                with _sized(part[key]):
                    self._descriptor(key)
        merged: dict[str, str] = {}
        for domain in sorted(writes, key=str):
            part = writes[domain]
            for key in sorted(part):
                descriptor = self._descriptor(key)
                if descriptor.owner_domain != domain:
                    label = (
                        domain
                        if isinstance(domain, str) and NAME_RE.fullmatch(domain)
                        else _key_label(domain)
                    )
                    with _sized(part[key]):
                        raise MetadataError(
                            METADATA_KEY_NOT_OWNED,
                            f"domain {label} may not write key {key}: it is owned by {descriptor.owner_domain}",
                            key=key,
                            domain=label,
                            owner=descriptor.owner_domain,
                        )
                merged[key] = part[key]
        return merged

    def _persisted(self, key: str) -> KeyDescriptor:
        descriptor = self._descriptor(key)
        if not descriptor.persisted:
            raise MetadataError(
                METADATA_EPHEMERAL_KEY,
                f"frame metadata key {key} is ephemeral and never persisted",
                key=key,
            )
        return descriptor

    def _descriptor(self, key: object) -> KeyDescriptor:
        descriptor = self.registry.get(key) if isinstance(key, str) else None
        if descriptor is None:
            label = _key_label(key)
            raise MetadataError(
                METADATA_UNKNOWN_KEY, f"frame metadata key {label} is not registered", key=label
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
