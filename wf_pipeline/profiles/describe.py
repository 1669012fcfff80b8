"""JSON-able summaries of loaded profiles for ``wf profiles list|show|validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.errors import ProfileError
from wf_pipeline.gates import gate_type
from wf_pipeline.profiles.inheritance import ID_LISTS
from wf_pipeline.profiles.loader import (
    ArtifactReader,
    Layer,
    LayerName,
    LoadedProfile,
    ProfileCatalog,
    load_profile_file,
)


def describe(loaded: LoadedProfile) -> dict[str, Any]:
    """Ids, digests and structure of one profile; never prompt text.

    Each gate carries its declaration, ``resolved_rules`` (its gate type's rules with their
    defaults applied) and ``rules_digest`` (`wf_pipeline.gates.rules_digest`).
    """
    profile = loaded.profile
    turns = []
    for turn in profile.ordered_turns():
        system = loaded.system_prompts.get(turn.turn_id)
        turns.append(
            {
                "seq": turn.seq,
                "turn_id": turn.turn_id,
                "title": turn.title,
                "input_refs": list(turn.input_refs),
                "output_type": turn.output_type,
                "output_format": turn.output_format,
                "gate_id": turn.gate_id,
                "retry_limit": turn.retry_limit,
                # The resolved policy the runtime follows (`wf_pipeline.profiles.retry`).
                "retry": loaded.retry_policy(turn.turn_id).to_json(),
                "timeout_ms": turn.timeout_ms,
                "prompt_ref": turn.prompt_ref,
                "prompt_digest": loaded.templates[turn.turn_id].digest,
                "system_prompt_ref": turn.system_prompt_ref,
                "system_prompt_digest": system.digest if system else None,
                "code_version": loaded.turn_code_version(turn.turn_id),
            }
        )
    return {
        "workflow_id": profile.workflow_id,
        "version": profile.version,
        "title": profile.title,
        "layer": loaded.layer,
        "source": str(loaded.source_path),
        "code_version": loaded.code_version,
        "target_frame_type": profile.target_frame_type,
        "final_artifact_type": profile.final_artifact_type,
        "turns": turns,
        # Each gate as declared, with its rules resolved (defaults applied) and their digest.
        "gates": [
            {
                **gate.model_dump(mode="json"),
                "resolved_rules": gate_type(gate.gate_type)
                .rules.model_validate(gate.rules)
                .model_dump(mode="json"),
                "rules_digest": loaded.gate_rules_digests[gate.gate_id],
            }
            for gate in profile.gates
        ],
    }


def validate_report(
    path: Path, layer: Layer | LayerName | None = None, artifact_reader: ArtifactReader | None = None
) -> dict[str, Any]:
    """``{"ok": true, ...summary}`` for a valid file, ``{"ok": false, "error": {code, ...}}`` otherwise."""
    try:
        loaded = load_profile_file(path, layer, artifact_reader)
    except ProfileError as exc:
        return {"ok": False, "path": str(path), "error": exc.to_dict()}
    return {"ok": True, "path": str(path), **describe(loaded)}


def catalog_rows(catalog: ProfileCatalog) -> list[dict[str, Any]]:
    """One row per effective profile, with the layer it comes from (for `wf profiles list`)."""
    return [
        {
            "workflow_id": loaded.profile.workflow_id,
            "version": loaded.profile.version,
            "layer": loaded.layer,
            "source": str(loaded.source_path),
            "title": loaded.profile.title,
        }
        for loaded in catalog.all()
    ]


def describe_resolved(loaded: LoadedProfile) -> dict[str, Any]:
    """The fully resolved profile and, for each field, the layer and file it came from.

    Args:
        loaded: a profile loaded from its file (a profile rebuilt from a snapshot has no
            resolution: every field is then attributed to the snapshot's source).

    Returns:
        ``{"workflow_id", "layer", "source", "code_version", "family", "sources", "profile",
        "fields"}``: ``sources`` lists every document applied, in order (``{kind, id, layer,
        path}``, `wf_pipeline.profiles.inheritance.Source`); ``profile`` is the resolved
        profile as validated (the fields set, JSON types); ``fields`` has one row per leaf
        field, ``{"field", "value", "kind", "id", "layer", "path"}``, turns and gates named
        by id (``turns.verification.prompt_ref``); ``kind``/``id``/``layer``/``path`` are null
        for a value no document set. Raises nothing.
    """
    resolution = loaded.resolution
    resolved = loaded.profile.model_dump(mode="json", exclude_unset=True)
    fallback = {
        "kind": "profile",
        "id": loaded.workflow_id,
        "layer": loaded.layer,
        "path": str(loaded.source_path),
    }
    rows = []
    for name, value in _flatten(resolved, ""):
        if resolution is None:
            origin: dict[str, Any] = fallback
        else:
            source = resolution.origin(name)
            origin = source.to_dict() if source is not None else dict.fromkeys(fallback)
        rows.append({"field": name, "value": value, **origin})
    return {
        "workflow_id": loaded.workflow_id,
        "layer": loaded.layer,
        "source": str(loaded.source_path),
        "code_version": loaded.code_version,
        "family": resolution.family if resolution is not None else None,
        "sources": [source.to_dict() for source in resolution.sources]
        if resolution is not None
        else [fallback],
        "profile": resolved,
        "fields": rows,
    }


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    # Leaves by dotted path; turns and gates by their id, other lists whole.
    if isinstance(value, dict) and value:
        rows: list[tuple[str, Any]] = []
        for key, inner in value.items():
            path = f"{prefix}{key}"
            if not prefix and key in ID_LISTS and isinstance(inner, list):
                for index, item in enumerate(inner):
                    item_id = item.get(ID_LISTS[key]) if isinstance(item, dict) else None
                    rows.extend(_flatten(item, f"{path}.{item_id if item_id is not None else index}."))
            else:
                rows.extend(_flatten(inner, f"{path}."))
        return rows
    return [(prefix.rstrip("."), value)]
