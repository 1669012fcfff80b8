"""Key registry: every metadata key the product may persist, with its governance.

A descriptor says who owns a key (the one domain allowed to write it), what its values
look like, how it may change (mutability class), whether it takes part in provenance
hashes, how large it may be, and how it is kept, redacted and shown. The registry is
declared as data in ``keys.yaml`` next to this module (shipped in the wheel) and
validated when it is loaded (`load_key_registry`). The registry is immutable;
``register`` returns a new one, so each domain can extend a base registry without
touching a shared global. ``FRAME_KEY_REGISTRY`` is the shipped registry.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import yaml

from wf_pipeline.errors import (
    METADATA_BAD_DURATION,
    METADATA_DUPLICATE_KEY,
    METADATA_INVALID_DESCRIPTOR,
    METADATA_REGISTRY_INVALID,
    MetadataError,
)
from wf_pipeline.metadata.canonical import DIGEST_PREFIX, is_digest
from wf_pipeline.metadata.durations import format_duration_ms, parse_duration_ms
from wf_pipeline.metadata.yaml_documents import load_yaml_document

SchemaType = Literal["digest", "identifier", "short_text"]

#: Schema types whose every value has the same size: a ``digest`` is always
#: ``sha256:`` + 64 hex digits (`DIGEST_MAX_BYTES` bytes), so such a key cannot grow
#: toward its budget however many values it sees.
FIXED_WIDTH_SCHEMA_TYPES: frozenset[str] = frozenset({"digest"})
Mutability = Literal["identity", "attested", "annotation", "ephemeral"]
Redaction = Literal["none", "hash", "drop"]
Visibility = Literal["public", "internal", "privileged"]
#: The domains that own metadata keys (issue 11: tree store, context, agent, workflow, and
#: the prompts and contexts of turns).
OwnerDomain = Literal["tree", "context", "agent", "workflow", "prompt_context"]
OWNER_DOMAINS: tuple[str, ...] = get_args(OwnerDomain)

KEEP = "keep"

DIGEST_MAX_BYTES = len(DIGEST_PREFIX) + 64
IDENTIFIER_MAX_BYTES = 128
SHORT_TEXT_MAX_BYTES = 256

# Key names, owner domains and retention policy names share one shape so they can be
# used as column names, log fields and policy references without escaping.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")

# Every character str.splitlines() breaks on: a value holding any of them spans lines.
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def spans_lines(value: str) -> bool:
    """Whether ``value`` holds any character that `str.splitlines` breaks on (`LINE_BREAKS`)."""
    return any(char in LINE_BREAKS for char in value)


def matches_schema(schema_type: SchemaType, value: str) -> bool:
    """Whether ``value`` has the shape ``schema_type`` promises.

    ``digest`` is ``sha256:<64 hex>``; ``identifier`` matches `IDENTIFIER_RE` (at most 128
    characters); ``short_text`` is non-empty with no control character (Unicode category Cc).

    Raises:
        MetadataError: ``METADATA_INVALID_DESCRIPTOR`` for a ``schema_type`` outside
            `SchemaType`.
    """
    if schema_type == "digest":
        return is_digest(value)
    if schema_type == "identifier":
        return IDENTIFIER_RE.fullmatch(value) is not None
    if schema_type == "short_text":
        return bool(value) and not any(unicodedata.category(char) == "Cc" for char in value)
    raise MetadataError(METADATA_INVALID_DESCRIPTOR, f"unknown schema type {schema_type!r}")


@dataclass(frozen=True)
class KeyDescriptor:
    """The governance of one metadata key (rules from the design's key registry).

    Attributes:
        name: the key, matching `NAME_RE`.
        owner_domain: the one domain that may write it, one of `OWNER_DOMAINS`.
        schema_type: the shape its values have (see `matches_schema`).
        mutability: ``identity`` (hash-critical), ``attested``, ``annotation`` or ``ephemeral``
            (never persisted).
        hash_impact: whether it takes part in provenance hashes.
        max_bytes: the largest UTF-8 size of a value, in bytes (a positive int).
        retention: ``keep`` or a retention policy name matching `NAME_RE`.
        redaction: ``none``, ``hash`` or ``drop``.
        visibility: ``public``, ``internal`` or ``privileged``; a privileged key is never
            shown by default and needs redaction ``hash`` or ``drop``.
        fold_after_ms: annotation keys only: the age in ms after which compaction folds the
            key's events into one snapshot event (None: never folded).

    Raises:
        MetadataError: ``METADATA_INVALID_DESCRIPTOR`` (figures: key, problem) when a field is
            out of its range, or an identity key lacks hash impact, or an ephemeral key has it.
    """

    name: str
    owner_domain: str
    schema_type: SchemaType
    mutability: Mutability
    hash_impact: bool
    max_bytes: int
    retention: str = KEEP
    redaction: Redaction = "none"
    visibility: Visibility = "internal"
    fold_after_ms: int | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise MetadataError(
                METADATA_INVALID_DESCRIPTOR,
                f"key descriptor {self.name!r}: {problem}",
                key=self.name,
                problem=problem,
            )

    def _problem(self) -> str | None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            return "name must match " + NAME_RE.pattern
        if self.owner_domain not in OWNER_DOMAINS:
            return f"owner_domain must be one of {OWNER_DOMAINS}"
        for field_name, allowed in (
            ("schema_type", SchemaType),
            ("mutability", Mutability),
            ("redaction", Redaction),
            ("visibility", Visibility),
        ):
            if getattr(self, field_name) not in get_args(allowed):
                return f"{field_name} must be one of {get_args(allowed)}"
        if not isinstance(self.hash_impact, bool):
            return "hash_impact must be a bool"
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            return "max_bytes must be a positive int"
        if not isinstance(self.retention, str) or not NAME_RE.fullmatch(self.retention):
            return "retention must be 'keep' or a policy name matching " + NAME_RE.pattern
        # The design defines identity keys as hash-critical; ephemeral keys are never
        # persisted, so they cannot feed a stored hash.
        if self.mutability == "identity" and not self.hash_impact:
            return "identity keys are hash-critical (hash_impact=True)"
        if self.mutability == "ephemeral" and self.hash_impact:
            return "ephemeral keys are never persisted and cannot have hash impact"
        # A privileged value is never shown by default: it is shown as a digest or not at all.
        if self.visibility == "privileged" and self.redaction == "none":
            return "privileged keys need redaction 'hash' or 'drop'"
        if self.fold_after_ms is not None:
            if self.mutability != "annotation":
                return "only annotation keys have fold_after (they alone keep an event log)"
            if isinstance(self.fold_after_ms, bool) or not isinstance(self.fold_after_ms, int):
                return "fold_after must be a positive duration"
            if self.fold_after_ms < 1:
                return "fold_after must be a positive duration"
        return None

    @property
    def fixed_width(self) -> bool:
        """Whether every value of this key has the same size by schema (`FIXED_WIDTH_SCHEMA_TYPES`)."""
        return self.schema_type in FIXED_WIDTH_SCHEMA_TYPES

    @property
    def persisted(self) -> bool:
        """Whether values of this key are ever written (every mutability but ``ephemeral``)."""
        return self.mutability != "ephemeral"


class KeyRegistry:
    """An immutable set of key descriptors, addressed by key name."""

    __slots__ = ("_by_name",)

    def __init__(self, descriptors: Iterable[KeyDescriptor] = ()) -> None:
        by_name: dict[str, KeyDescriptor] = {}
        for descriptor in descriptors:
            if not isinstance(descriptor, KeyDescriptor):
                raise MetadataError(
                    METADATA_INVALID_DESCRIPTOR,
                    f"expected a KeyDescriptor, got {type(descriptor).__name__}",
                )
            if descriptor.name in by_name:
                raise MetadataError(
                    METADATA_DUPLICATE_KEY,
                    f"key {descriptor.name!r} is already registered",
                    key=descriptor.name,
                )
            by_name[descriptor.name] = descriptor
        self._by_name = MappingProxyType(dict(sorted(by_name.items())))

    def register(self, *descriptors: KeyDescriptor) -> KeyRegistry:
        """A new registry with ``descriptors`` added; this one is left unchanged.

        Raises:
            MetadataError: ``METADATA_DUPLICATE_KEY`` (figure: key) when a name is already
                registered, ``METADATA_INVALID_DESCRIPTOR`` for something not a `KeyDescriptor`.
        """
        return KeyRegistry((*self, *descriptors))

    def get(self, name: str) -> KeyDescriptor | None:
        """The descriptor of key ``name``, or None when it is not registered."""
        return self._by_name.get(name)

    def select(
        self, *, owner_domain: str | None = None, mutability: Mutability | None = None
    ) -> tuple[KeyDescriptor, ...]:
        """The descriptors of one owner domain and/or one mutability class, in key-name order."""
        return tuple(
            descriptor
            for descriptor in self
            if (owner_domain is None or descriptor.owner_domain == owner_domain)
            and (mutability is None or descriptor.mutability == mutability)
        )

    def names(self) -> tuple[str, ...]:
        """Every registered key name, sorted."""
        return tuple(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[KeyDescriptor]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyRegistry) and dict(self._by_name) == dict(other._by_name)

    def __hash__(self) -> int:
        return hash(tuple(self._by_name.values()))

    def __repr__(self) -> str:
        return f"KeyRegistry({', '.join(self._by_name)})"


REGISTRY_FILE = "keys.yaml"
REGISTRY_VERSION = 1

# The fields of one key in the registry file: required ones, optional ones taken as they
# are, and fold_after, a duration text that becomes KeyDescriptor.fold_after_ms.
_REQUIRED_FIELDS = ("name", "owner_domain", "schema_type", "mutability", "hash_impact", "max_bytes")
_DEFAULTED_FIELDS = ("retention", "redaction", "visibility")
_FIELDS = (*_REQUIRED_FIELDS, *_DEFAULTED_FIELDS, "fold_after")


def _registry_error(source: str, problem: str) -> MetadataError:
    return MetadataError(
        METADATA_REGISTRY_INVALID, f"key registry {source}: {problem}", source=source, problem=problem
    )


def _descriptor_error(name: str, problem: str) -> MetadataError:
    return MetadataError(
        METADATA_INVALID_DESCRIPTOR, f"key descriptor {name!r}: {problem}", key=name, problem=problem
    )


def _descriptor_from(entry: object, index: int) -> KeyDescriptor:
    """One registry file entry as a `KeyDescriptor` (``METADATA_INVALID_DESCRIPTOR`` otherwise)."""
    if not isinstance(entry, Mapping):
        raise _descriptor_error(f"#{index}", "an entry must be a mapping of fields")
    name = entry.get("name")
    label = name if isinstance(name, str) else f"#{index}"
    unknown = sorted(str(field) for field in entry if field not in _FIELDS)
    if unknown:
        raise _descriptor_error(label, f"unknown fields {unknown}")
    missing = [field for field in _REQUIRED_FIELDS if field not in entry]
    if missing:
        raise _descriptor_error(label, f"missing fields {missing}")
    fields: dict[str, Any] = {
        field: entry[field] for field in (*_REQUIRED_FIELDS, *_DEFAULTED_FIELDS) if field in entry
    }
    fold_after = entry.get("fold_after")
    if fold_after is not None:
        if not isinstance(fold_after, str):
            raise _descriptor_error(label, "fold_after must be a duration such as 30d")
        try:
            fields["fold_after_ms"] = parse_duration_ms(fold_after)
        except MetadataError as exc:
            if exc.code != METADATA_BAD_DURATION:
                raise
            raise _descriptor_error(label, "fold_after must be a duration such as 30d") from exc
        if fields["fold_after_ms"] is None:
            raise _descriptor_error(label, "fold_after cannot be 'forever' (leave it out instead)")
    return KeyDescriptor(**fields)


def parse_key_registry(text: str, source: str = "<text>") -> KeyRegistry:
    """The registry declared by ``text``, the YAML form of ``keys.yaml``, validated whole.

    Args:
        text: YAML with ``version`` (`REGISTRY_VERSION`) and ``keys``, a list of key
            entries (the fields of `KeyDescriptor`; ``fold_after`` is a duration such as
            ``30d``).
        source: names the text in error messages (a file path or ``<text>``).

    Returns:
        A `KeyRegistry` of every entry.

    Raises:
        MetadataError: ``METADATA_REGISTRY_INVALID`` (figures: source, problem) when the text
            is not YAML, not a mapping, has another version or no list of keys;
            ``METADATA_INVALID_DESCRIPTOR`` (figures: key, problem) for an entry with a
            missing, unknown or out-of-range field; ``METADATA_DUPLICATE_KEY`` for a key
            declared twice.
    """
    try:
        document = load_yaml_document(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _registry_error(source, f"not valid YAML{where}") from exc
    if not isinstance(document, Mapping):
        raise _registry_error(source, "the document must be a mapping with version and keys")
    unknown = sorted(str(field) for field in document if field not in ("version", "keys"))
    if unknown:
        raise _registry_error(source, f"unknown top-level fields {unknown}")
    version = document.get("version")
    if version != REGISTRY_VERSION or isinstance(version, bool):
        raise _registry_error(source, f"version must be {REGISTRY_VERSION}, got {version!r}")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise _registry_error(source, "keys must be a non-empty list of key entries")
    return KeyRegistry(_descriptor_from(entry, index) for index, entry in enumerate(entries))


def load_key_registry(path: Path | str | None = None) -> KeyRegistry:
    """Load and validate a key registry file; by default ``keys.yaml`` shipped with this package.

    Args:
        path: a registry file; None reads the packaged `REGISTRY_FILE`.

    Returns:
        The validated `KeyRegistry` (see `parse_key_registry`).

    Raises:
        MetadataError: ``METADATA_REGISTRY_INVALID`` when the file cannot be read, and the
            codes of `parse_key_registry`.
    """
    if path is None:
        resource = resources.files("wf_pipeline.metadata").joinpath(REGISTRY_FILE)
        source, reader = REGISTRY_FILE, resource.read_text
    else:
        source, reader = str(path), Path(path).read_text
    try:
        text = reader(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _registry_error(source, f"cannot be read ({type(exc).__name__})") from exc
    return parse_key_registry(text, source)


def descriptor_dict(descriptor: KeyDescriptor) -> dict[str, Any]:
    """One descriptor as its registry-file fields (``fold_after`` as a duration text, or None)."""
    return {
        "name": descriptor.name,
        "owner_domain": descriptor.owner_domain,
        "schema_type": descriptor.schema_type,
        "mutability": descriptor.mutability,
        "hash_impact": descriptor.hash_impact,
        "max_bytes": descriptor.max_bytes,
        "retention": descriptor.retention,
        "redaction": descriptor.redaction,
        "visibility": descriptor.visibility,
        "fold_after": None
        if descriptor.fold_after_ms is None
        else format_duration_ms(descriptor.fold_after_ms),
    }


#: The shipped registry (``keys.yaml``): every key the product writes. Workflow frames carry
#: the agent's identity and provider facts (domain ``agent``), the prompt digest
#: (``prompt_context``), the context snapshot id (``context``) and the prompt link
#: (``workflow``); the annotation keys change after a frame is written.
FRAME_KEY_REGISTRY = load_key_registry()


# Budgets travel with the registry they limit; importing them from here keeps callers
# that configure both to one import.
from wf_pipeline.metadata.budgets import Budgets  # noqa: E402

__all__ = [
    "FIXED_WIDTH_SCHEMA_TYPES",
    "FRAME_KEY_REGISTRY",
    "OWNER_DOMAINS",
    "REGISTRY_FILE",
    "Budgets",
    "KeyDescriptor",
    "KeyRegistry",
    "Mutability",
    "OwnerDomain",
    "Redaction",
    "SchemaType",
    "Visibility",
    "descriptor_dict",
    "load_key_registry",
    "matches_schema",
    "parse_key_registry",
    "spans_lines",
]
