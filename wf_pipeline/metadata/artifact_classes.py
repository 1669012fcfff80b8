"""Artifact classes (DESIGN section 7): what kind of payload an artifact is, from the role it is linked with.

A turn attempt links each artifact it reads or writes under a role
(`wf_pipeline.metadata.records.ArtifactLinkRecord.role`); the class groups roles the way
retention windows and telemetry count them:

- ``prompt_render``: ``system_prompt``, ``prompt_template``, ``rendered_prompt``;
- ``context_payload``: ``context``;
- ``output``: ``output``;
- ``provider_response``: ``provider_response``, a provider's raw answer as it came back.

An ``input`` link re-reads an earlier turn's output; it puts nothing, so it has no class
of its own (the artifact was counted as ``output`` when it was put).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["ARTIFACT_CLASSES", "ARTIFACT_CLASS_OF_ROLE", "artifact_class_of_role"]

#: The built-in artifact classes.
ARTIFACT_CLASSES: Final[tuple[str, ...]] = ("prompt_render", "context_payload", "provider_response", "output")

#: Link role -> artifact class, for the roles under which a turn attempt puts an artifact.
ARTIFACT_CLASS_OF_ROLE: Final = MappingProxyType(
    {
        "system_prompt": "prompt_render",
        "prompt_template": "prompt_render",
        "rendered_prompt": "prompt_render",
        "context": "context_payload",
        "output": "output",
        "provider_response": "provider_response",
    }
)


def artifact_class_of_role(role: str) -> str | None:
    """The artifact class of a link ``role``; None for ``input`` (and any role that puts nothing)."""
    return ARTIFACT_CLASS_OF_ROLE.get(role)
