"""Key registry: every metadata key the product may persist, with its governance.

A descriptor says who owns a key, what its values look like, how it may change
(mutability class), whether it takes part in provenance hashes, how large it may be,
and how it is kept, redacted and shown. The registry is immutable; ``register``
returns a new one, so each domain can extend a base registry without touching a
shared global. ``FRAME_KEY_REGISTRY`` holds the keys of workflow frames.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from wf_pipeline.errors import METADATA_DUPLICATE_KEY, METADATA_INVALID_DESCRIPTOR, MetadataError
from wf_pipeline.metadata.canonical import DIGEST_PREFIX, is_digest

SchemaType = Literal["digest", "identifier", "short_text"]

#: Schema types whose every value has the same size: a ``digest`` is always
#: ``sha256:`` + 64 hex digits (`DIGEST_MAX_BYTES` bytes), so such a key cannot grow
#: toward its budget however many values it sees.
FIXED_WIDTH_SCHEMA_TYPES: frozenset[str] = frozenset({"digest"})
Mutability = Literal["identity", "attested", "annotation", "ephemeral"]
Redaction = Literal["none", "hash", "drop"]
Visibility = Literal["public", "internal", "privileged"]

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
        owner_domain: the domain that owns it, matching `NAME_RE`.
        schema_type: the shape its values have (see `matches_schema`).
        mutability: ``identity`` (hash-critical), ``attested``, ``annotation`` or ``ephemeral``
            (never persisted).
        hash_impact: whether it takes part in provenance hashes.
        max_bytes: the largest UTF-8 size of a value, in bytes (a positive int).
        retention: ``keep`` or a retention policy name matching `NAME_RE`.
        redaction: ``none``, ``hash`` or ``drop``.
        visibility: ``public``, ``internal`` or ``privileged``.

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
        if not isinstance(self.owner_domain, str) or not NAME_RE.fullmatch(self.owner_domain):
            return "owner_domain must match " + NAME_RE.pattern
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


# Keys the runtime writes on workflow frames. The agent is the frame's identity; the
# provider facts and the digests of the prompt and context are attested once, at write
# time. The prompt and context digests take part in provenance hashes (a different
# prompt or context means a different frame history); descriptive provider facts do not.
FRAME_KEY_REGISTRY = KeyRegistry(
    (
        KeyDescriptor(
            "agent_id", "runtime", "identifier", "identity", True, IDENTIFIER_MAX_BYTES, visibility="public"
        ),
        KeyDescriptor(
            "provider", "runtime", "identifier", "attested", False, IDENTIFIER_MAX_BYTES, visibility="public"
        ),
        KeyDescriptor(
            "model", "runtime", "identifier", "attested", False, IDENTIFIER_MAX_BYTES, visibility="public"
        ),
        KeyDescriptor(
            "provider_type",
            "runtime",
            "identifier",
            "attested",
            False,
            IDENTIFIER_MAX_BYTES,
            visibility="public",
        ),
        KeyDescriptor("prompt_digest", "runtime", "digest", "attested", True, DIGEST_MAX_BYTES),
        KeyDescriptor("context_digest", "runtime", "digest", "attested", True, DIGEST_MAX_BYTES),
        KeyDescriptor("prompt_link_id", "runtime", "identifier", "attested", False, IDENTIFIER_MAX_BYTES),
    )
)


# Budgets travel with the registry they limit; importing them from here keeps callers
# that configure both to one import.
from wf_pipeline.metadata.budgets import Budgets  # noqa: E402

__all__ = [
    "FIXED_WIDTH_SCHEMA_TYPES",
    "FRAME_KEY_REGISTRY",
    "Budgets",
    "KeyDescriptor",
    "KeyRegistry",
    "Mutability",
    "Redaction",
    "SchemaType",
    "Visibility",
    "matches_schema",
    "spans_lines",
]
