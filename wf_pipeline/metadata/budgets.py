"""Size budgets for frame metadata and for the prompt and context artifacts of a turn.

Over budget is a typed error (``METADATA_BUDGET_EXCEEDED``) raised before anything is
written; its message names the budget, the size and the limit, and its details carry
them as ``budget``, ``scope``, ``size`` and ``limit`` (bytes). Sizes are UTF-8 bytes: a
key's budget applies to its value, the frame budget to the sum of key and value bytes
over all keys of one frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from wf_pipeline.errors import (
    METADATA_BUDGET_EXCEEDED,
    METADATA_INVALID_BUDGET,
    METADATA_UNKNOWN_ARTIFACT_ROLE,
    MetadataError,
)

if TYPE_CHECKING:  # registry re-exports Budgets, so a runtime import would be circular
    from wf_pipeline.metadata.registry import KeyDescriptor

MIB = 1024 * 1024

ArtifactBudgetRole = Literal["prompt", "context"]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _exceeded(what: str, scope: str, budget: str, size: int, limit: int, **extra: str) -> MetadataError:
    return MetadataError(
        METADATA_BUDGET_EXCEEDED,
        f"{what} of {size} bytes exceeds budget {budget} of {limit} bytes",
        budget=budget,
        scope=scope,
        size=size,
        limit=limit,
        **extra,
    )


@dataclass(frozen=True)
class Budgets:
    """Byte budgets (all positive ints; ``METADATA_INVALID_BUDGET`` otherwise, naming the budget and value)."""

    # Overrides of a key descriptor's max_bytes, by key name.
    per_key_max_bytes: Mapping[str, int] = field(default_factory=dict)
    per_frame_max_bytes: int = 2048
    prompt_artifact_max_bytes: int = 1 * MIB
    context_artifact_max_bytes: int = 4 * MIB

    def __post_init__(self) -> None:
        limits = {
            "per_frame_max_bytes": self.per_frame_max_bytes,
            "prompt_artifact_max_bytes": self.prompt_artifact_max_bytes,
            "context_artifact_max_bytes": self.context_artifact_max_bytes,
            **{f"per_key_max_bytes[{key}]": value for key, value in dict(self.per_key_max_bytes).items()},
        }
        for name, value in limits.items():
            if not _is_positive_int(value):
                raise MetadataError(
                    METADATA_INVALID_BUDGET,
                    f"budget {name} must be a positive int of bytes, got {value!r}",
                    budget=name,
                    value=repr(value),
                )
        # Frozen all the way down: a shared Budgets must not change under its users.
        object.__setattr__(self, "per_key_max_bytes", MappingProxyType(dict(self.per_key_max_bytes)))

    def key_limit(self, descriptor: KeyDescriptor) -> int:
        """Bytes a value of ``descriptor``'s key may have: the override, else the descriptor's max_bytes."""
        return self.per_key_max_bytes.get(descriptor.name, descriptor.max_bytes)

    def check_key(self, descriptor: KeyDescriptor, size: int) -> None:
        """Raise ``METADATA_BUDGET_EXCEEDED`` (scope ``key``) when a value of ``size`` bytes is over its key's budget."""
        limit = self.key_limit(descriptor)
        if size > limit:
            key = descriptor.name
            budget = (
                f"per_key_max_bytes[{key}]" if key in self.per_key_max_bytes else f"max_bytes of key {key}"
            )
            raise _exceeded(f"value of {key}", "key", budget, size, limit, key=key)

    def check_frame(self, size: int) -> None:
        """Raise ``METADATA_BUDGET_EXCEEDED`` (scope ``frame``) when one frame's metadata of ``size`` bytes is over budget."""
        if size > self.per_frame_max_bytes:
            raise _exceeded("frame metadata", "frame", "per_frame_max_bytes", size, self.per_frame_max_bytes)

    def artifact_limit(self, role: ArtifactBudgetRole) -> int:
        """Bytes a ``prompt`` or ``context`` artifact may have; ``METADATA_UNKNOWN_ARTIFACT_ROLE`` for another role."""
        if role == "prompt":
            return self.prompt_artifact_max_bytes
        if role == "context":
            return self.context_artifact_max_bytes
        raise MetadataError(
            METADATA_UNKNOWN_ARTIFACT_ROLE,
            f"no artifact budget for role {role!r} (roles with one: prompt, context)",
            role=str(role),
        )


def check_artifact_budget(role: ArtifactBudgetRole, size: int, budgets: Budgets | None = None) -> None:
    """Raise ``METADATA_BUDGET_EXCEEDED`` when a ``role`` artifact of ``size`` bytes is over budget.

    The message reads e.g. "prompt artifact of 1048577 bytes exceeds budget
    prompt_artifact_max_bytes of 1048576 bytes"; ``METADATA_UNKNOWN_ARTIFACT_ROLE`` for a
    role without a budget.
    """
    limit = (budgets or Budgets()).artifact_limit(role)
    if size > limit:
        raise _exceeded(f"{role} artifact", f"{role}_artifact", f"{role}_artifact_max_bytes", size, limit)
