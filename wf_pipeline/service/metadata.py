"""Metadata use cases: the key registry, the default view of a node's or frame's metadata, annotations.

Called by ``wf metadata ...``. The registry is the shipped ``keys.yaml``
(`wf_pipeline.metadata.registry.FRAME_KEY_REGISTRY`). Views apply each key's visibility
and redaction policy (`wf_pipeline.metadata.visibility`): they carry ids, digests and the
values of public and internal keys, never a privileged value. Annotation changes pass
the one write boundary (`FrameMetadataBoundary.validate_annotations`) with the domain
making them before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wf_pipeline.errors import METADATA_TARGET_NOT_FOUND, MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.records import FrameRecord, now_ms
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyRegistry, descriptor_dict
from wf_pipeline.metadata.visibility import default_view
from wf_pipeline.records import open_settings_record_store
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.settings import Settings

__all__ = ["annotate", "list_keys", "show_metadata"]


def list_keys(registry: KeyRegistry = FRAME_KEY_REGISTRY) -> list[dict[str, Any]]:
    """Every key of the registry, by name: its registry-file fields (`descriptor_dict`)."""
    return [descriptor_dict(descriptor) for descriptor in registry]


def _frames_of(records: RecordStore, target: str) -> tuple[str, list[FrameRecord]]:
    """(``frame``, ``thread`` or ``node``, the frames ``target`` names).

    One frame by id; a thread's frames (``wf threads show`` names threads); a node's head frames.
    """
    frame = records.get_frame(target)
    if frame is not None:
        return "frame", [frame]
    if target.startswith("thread:"):
        produced = records.frames_for_thread(target)
        if produced:
            return "thread", produced
    heads = [head for head in records.head_frames() if head.node_id == target]
    if heads:
        return "node", heads
    raise MetadataError(
        METADATA_TARGET_NOT_FOUND,
        f"no frame, no thread with frames and no node with a head frame has id {target}",
        target=target,
    )


def show_metadata(
    settings: Settings, target: str, *, registry: KeyRegistry = FRAME_KEY_REGISTRY
) -> dict[str, Any]:
    """The default view of a frame's metadata, of every frame a thread produced, or of every head frame of a node.

    Args:
        settings: the record store.
        target: a frame id (``frame:...``), a thread id (``thread:...``, the frames it
            produced), or a node id (its head frame of each frame type).
        registry: the key registry whose visibility and redaction policies apply.

    Returns:
        ``{"target", "kind": "frame"|"thread"|"node", "frames": [...]}``; each frame is ``{frame_id,
        node_id, frame_type, artifact_id, thread_id, created_at_ms, metadata, annotations}``
        where ``metadata`` and ``annotations`` are `DefaultView.to_dict` (keys shown by value
        or digest, withheld keys by name). Annotations are the current view of the log.

    Raises:
        MetadataError: ``METADATA_TARGET_NOT_FOUND`` when no frame, no thread with frames
            and no node's head frame has that id (a target that is not UTF-8 text has none).
        RecordError: the record store's codes.
    """
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable command-line bytes come as lone surrogates: no id has them, and no
        # store can encode them in a query.
        shown_id = target.encode("utf-8", "backslashreplace").decode("utf-8")[:80]
        raise MetadataError(
            METADATA_TARGET_NOT_FOUND, f"{shown_id!r} is not UTF-8 text, so no frame or node has it as id"
        ) from None
    with open_settings_record_store(settings) as records:
        kind, frames = _frames_of(records, target)
        shown = []
        for frame in frames:
            annotations = {key: row.value for key, row in records.current_annotations(frame.frame_id).items()}
            shown.append(
                {
                    "frame_id": frame.frame_id,
                    "node_id": frame.node_id,
                    "frame_type": frame.frame_type,
                    "artifact_id": frame.artifact_id,
                    "thread_id": frame.thread_id,
                    "created_at_ms": frame.created_at_ms,
                    "metadata": default_view(registry, frame.metadata).to_dict(),
                    "annotations": default_view(registry, annotations).to_dict(),
                }
            )
    return {"target": target, "kind": kind, "frames": shown}


def annotate(
    settings: Settings,
    frame_id: str,
    changes: Mapping[str, str | None],
    *,
    domain: str,
    at_ms: int | None = None,
    boundary: FrameMetadataBoundary | None = None,
) -> list[dict[str, Any]]:
    """Change annotation keys of a frame as ``domain``: one appended event per key, the view updated.

    The whole change passes the boundary first; a rejected change writes nothing.

    Args:
        settings: the record store.
        frame_id: the frame to annotate (it must exist).
        changes: key -> new value, or None to clear the key.
        domain: the owner domain making the change (`OWNER_DOMAINS`).
        at_ms: the time of the change (epoch ms; default now).
        boundary: the write boundary (default: the shipped registry and default budgets).

    Returns:
        The events appended, by key: ``{frame_id, key, seq, kind, domain, at_ms}`` (values
        are left out: a privileged value is not echoed).

    Raises:
        MetadataError: the boundary's codes (``METADATA_UNKNOWN_KEY``,
            ``METADATA_KEY_NOT_OWNED``, ``METADATA_KEY_IMMUTABLE``, ...),
            ``METADATA_TARGET_NOT_FOUND`` when no frame has that id.
        RecordError: the record store's codes.
    """
    accepted = (boundary or FrameMetadataBoundary()).validate_annotations(domain, changes)
    with open_settings_record_store(settings) as records:
        if records.get_frame(frame_id) is None:
            raise MetadataError(METADATA_TARGET_NOT_FOUND, f"no frame has id {frame_id}", target=frame_id)
        events = records.append_annotations(
            frame_id, accepted, domain=domain, at_ms=now_ms() if at_ms is None else at_ms
        )
    return [
        {
            "frame_id": event.frame_id,
            "key": event.key,
            "seq": event.seq,
            "kind": event.kind,
            "domain": event.domain,
            "at_ms": event.at_ms,
        }
        for event in events
    ]
