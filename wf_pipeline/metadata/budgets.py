"""Size budgets for frame metadata and for the prompt and context artifacts of a turn.

Over budget is a typed error (``METADATA_BUDGET_EXCEEDED``) raised before anything is
written. Sizes are UTF-8 bytes: a key's budget applies to its value, the frame budget
to the sum of key and value bytes over all keys of one frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from wf_pipeline.errors import MetadataError

if TYPE_CHECKING:  # registry re-exports Budgets, so a runtime import would be circular
    from wf_pipeline.metadata.registry import KeyDescriptor

MIB = 1024 * 1024

ArtifactBudgetRole = Literal["prompt", "context"]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Budgets:
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
                    "METADATA_INVALID_BUDGET", f"budget {name} must be a positive int", budget=name
                )
        # Frozen all the way down: a shared Budgets must not change under its users.
        object.__setattr__(self, "per_key_max_bytes", MappingProxyType(dict(self.per_key_max_bytes)))

    def key_limit(self, descriptor: KeyDescriptor) -> int:
        return self.per_key_max_bytes.get(descriptor.name, descriptor.max_bytes)

    def artifact_limit(self, role: ArtifactBudgetRole) -> int:
        if role == "prompt":
            return self.prompt_artifact_max_bytes
        if role == "context":
            return self.context_artifact_max_bytes
        raise MetadataError(
            "METADATA_UNKNOWN_ARTIFACT_ROLE", f"no artifact budget for role {role!r}", role=str(role)
        )


def check_artifact_budget(role: ArtifactBudgetRole, size: int, budgets: Budgets | None = None) -> None:
    """Raise ``METADATA_BUDGET_EXCEEDED`` when a ``role`` artifact of ``size`` bytes is over budget."""
    limit = (budgets or Budgets()).artifact_limit(role)
    if size > limit:
        raise MetadataError(
            "METADATA_BUDGET_EXCEEDED",
            f"{role} artifact of {size} bytes exceeds its budget of {limit} bytes",
            scope=f"{role}_artifact",
            size=size,
            limit=limit,
        )
