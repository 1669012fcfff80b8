"""Telemetry rows of a turn attempt: its frame-metadata writes and the artifacts it put.

The runtime is the one place that knows, for each write, where it happened (workflow,
thread, turn, node, frame) and its size; these functions turn that into rows of
``metadata_writes`` and ``artifact_writes`` (`wf_pipeline.telemetry`) on the env's
recorder. Rows are buffered; `flush_telemetry` writes them at the end of a step. Rows
carry ids, sizes and codes only: never a metadata value or an artifact's bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.records import ArtifactLinkRecord
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.runtime.environment import RuntimeEnv

__all__ = [
    "BRANCH_DOMAIN",
    "BRANCH_KEY",
    "FRAME_KEY",
    "WriteSite",
    "flush_telemetry",
    "record_artifact_links",
    "record_branch_decision",
    "record_frame_metadata",
    "record_rejection",
]

#: The ``key`` (and ``domain``) of a rejection of a whole frame's metadata (its frame budget).
FRAME_KEY = "*"
_FRAME_DOMAIN = "frame"
#: The ``domain`` and ``key`` of a branch decision's row (`record_branch_decision`).
BRANCH_DOMAIN = "branch"
BRANCH_KEY = "turns.branch"
_UNKNOWN = "unknown"


@dataclass(frozen=True)
class WriteSite:
    """Where a write happened: the ids every telemetry row of one turn attempt shares."""

    workflow_id: str
    profile_version: str | None
    thread_id: str
    turn_id: str
    node_id: str | None
    frame_id: str | None
    # ``taken``/``not_taken`` for a turn that declares ``when:`` (the ``branch`` column), else None.
    branch: str | None = None

    def columns(self) -> dict[str, str | None]:
        """The site as telemetry columns (keyword arguments of the recorder)."""
        return {
            "workflow_id": self.workflow_id,
            "profile_version": self.profile_version,
            "thread_id": self.thread_id,
            "turn_id": self.turn_id,
            "node_id": self.node_id,
            "frame_id": self.frame_id,
            "branch": self.branch,
        }


def record_frame_metadata(env: RuntimeEnv, site: WriteSite, metadata: Mapping[str, str]) -> None:
    """One ``accepted`` row per key of a frame's metadata, written through ``env.boundary``.

    Each row has the key's owner domain and mutability class from the boundary's key
    registry, its value's UTF-8 size and its budget (bytes, `Budgets.key_limit`).
    """
    recorder = env.telemetry
    if not recorder.enabled:
        return
    boundary = env.boundary
    columns = site.columns()
    for key, value in metadata.items():
        descriptor = boundary.registry.get(key)
        recorder.metadata_write(
            **columns,
            domain=descriptor.owner_domain if descriptor else _UNKNOWN,
            key=key,
            mutability_class=descriptor.mutability if descriptor else None,
            bytes=len(value.encode("utf-8")),
            budget_bytes=boundary.budgets.key_limit(descriptor) if descriptor else None,
            outcome="accepted",
        )


def record_branch_decision(env: RuntimeEnv, site: WriteSite, decision: Mapping[str, object]) -> None:
    """One ``accepted`` ``metadata_writes`` row for a branch decision recorded in ``turns.branch``.

    The row has domain `BRANCH_DOMAIN`, key `BRANCH_KEY`, no frame, the site's ``branch``
    (``taken`` or ``not_taken``) and ``bytes`` = the decision's canonical JSON size, the
    bytes it adds to the turn's record. A turn its branch skipped writes nothing else, so
    this row is how telemetry counts skips (docs/specs/conditional-branches.md).
    """
    recorder = env.telemetry
    if not recorder.enabled:
        return
    recorder.metadata_write(
        **site.columns(),
        domain=BRANCH_DOMAIN,
        key=BRANCH_KEY,
        mutability_class=None,
        bytes=len(canonical_json(dict(decision))),
        budget_bytes=None,
        outcome="accepted",
    )


def record_rejection(env: RuntimeEnv, site: WriteSite, error: MetadataError) -> None:
    """One ``rejected`` row for the key (or the frame, key `FRAME_KEY`) ``env.boundary`` refused.

    The key and size come from the error's details (`FrameMetadataBoundary.validate`);
    ``error_code`` is the error's code.
    """
    recorder = env.telemetry
    if not recorder.enabled:
        return
    boundary: FrameMetadataBoundary = env.boundary
    details = error.details
    key = details.get("key")
    if details.get("scope") == "frame" or not isinstance(key, str):
        domain, key, mutability, budget = _FRAME_DOMAIN, FRAME_KEY, None, boundary.budgets.per_frame_max_bytes
    else:
        descriptor = boundary.registry.get(key)
        domain = descriptor.owner_domain if descriptor else _UNKNOWN
        mutability = descriptor.mutability if descriptor else None
        budget = boundary.budgets.key_limit(descriptor) if descriptor else None
    size = details.get("size")
    recorder.metadata_write(
        **site.columns(),
        domain=domain,
        key=key,
        mutability_class=mutability,
        bytes=size if isinstance(size, int) else 0,
        budget_bytes=budget,
        outcome="rejected",
        error_code=str(error.code),
    )


def record_artifact_links(
    env: RuntimeEnv, site: WriteSite, links: Iterable[ArtifactLinkRecord], output_type: str
) -> None:
    """One ``accepted`` ``artifact_writes`` row per artifact a turn attempt put (its links but ``input``).

    The class comes from the link's role and the turn's ``output_type`` (`class_of_link`,
    the rule retention applies too), the size from the link (bytes). An ``input`` link
    re-reads an output put earlier, so it has no row.
    """
    recorder = env.telemetry
    if not recorder.enabled:
        return
    columns = site.columns()
    for link in links:
        artifact_class = class_of_link(link.role, output_type)
        if artifact_class is None:
            continue
        recorder.artifact_event(**columns, artifact_class=artifact_class, bytes=link.size, outcome="accepted")


def flush_telemetry(env: RuntimeEnv, run_id: str | None = None) -> int:
    """Write the env's buffered telemetry rows (`TelemetryRecorder.flush_safely`); never raises.

    Args:
        env: the runtime whose recorder holds the rows.
        run_id: the Dagster run the rows belong to; fills rows recorded without one.

    Returns:
        Rows written (0 when telemetry is off, the buffer was empty, or writing failed and
        was logged once).
    """
    return env.telemetry.flush_safely(run_id=run_id)
