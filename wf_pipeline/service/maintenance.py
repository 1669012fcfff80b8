"""The maintenance use cases the Dagster ``wf_retention`` job runs (retention, then compaction) and ``wf_keys_rewrap``.

The job and its schedule and sensor live in the compiler (`wf_pipeline.compiler.maintenance`),
which sits below this layer; the code location hands these calls in (`maintenance_calls`).
They are the very use cases ``wf retention apply`` and ``wf compact`` run, with their
results cut down to figures for Dagster metadata: counts, bytes and ids, no paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wf_pipeline.compiler import MaintenanceCalls
from wf_pipeline.service.compaction import compact
from wf_pipeline.service.keys import rewrap_figures
from wf_pipeline.service.retention import retention_apply, retention_plan
from wf_pipeline.settings import Settings

# Compaction figures that are not counts or bytes: kept as they are (an id).
_ID_FIGURES = ("compaction_id",)


def due_bytes(settings: Settings, now_ms: int) -> int:
    """Bytes retention would free at ``now_ms`` (a dry run, `retention_plan`); raises its codes."""
    return int(retention_plan(settings, now_ms)["bytes"])


# Shredding figures of `retention_apply`, copied as they are (counts).
_SHRED_FIGURES = ("shredded_lineages", "shredded_artifacts", "moved_keys", "deferred_lineages")


def apply_retention_figures(settings: Settings, now_ms: int) -> dict[str, int | str]:
    """Apply retention at ``now_ms`` (`retention_apply`).

    Returns:
        ``{"deleted": artifacts, "bytes_freed": bytes, "tombstones_written": tombstones}``,
        ``deleted_<class>`` (artifacts) per artifact class, the shredding counts
        (``shredded_lineages``, ``shredded_artifacts``, ``moved_keys``, ``deferred_lineages``),
        ``shredded_<class>`` (artifacts) per class, ``plaintext_deleted_<class>`` (shred-mode
        artifacts deleted for want of a data key) and ``shredded_kek_ids`` (the destroyed
        KEK ids, space-separated, ``-`` for none: ids, never key material). Raises
        `retention_apply`'s codes.
    """
    result = retention_apply(settings, now_ms)
    figures: dict[str, int | str] = {
        name: int(result[name]) for name in ("deleted", "bytes_freed", "tombstones_written", *_SHRED_FIGURES)
    }
    for group in result["groups"]:
        key = f"deleted_{group['artifact_class']}"
        figures[key] = int(figures.get(key, 0)) + int(group["count"])
    destroyed = [item for item in result["shredded"] if item["status"] == "destroyed"]
    for item in destroyed:
        key = f"shredded_{item['artifact_class']}"
        figures[key] = int(figures.get(key, 0)) + int(item["artifacts"])
    for artifact_class, count in result["plaintext_in_shred_mode"].items():
        figures[f"plaintext_deleted_{artifact_class}"] = int(count)
    figures["shredded_kek_ids"] = " ".join(k for item in destroyed for k in item["kek_ids"]) or "-"
    return figures


def compact_figures(settings: Settings, now_ms: int) -> dict[str, int | str]:
    """Compact at ``now_ms`` (`compact`): its counts and bytes per part, flattened.

    Returns:
        ``{"compaction_id": id, "bytes_freed": bytes, "<part>_<figure>": count or bytes}``
        (e.g. ``orphans_deleted``, ``scratch_bytes_freed``); paths and lists are left out.
        Raises `compact`'s codes.
    """
    summary = compact(settings, now_ms).to_dict()
    figures: dict[str, int | str] = {name: summary[name] for name in _ID_FIGURES}
    figures.update(_numbers(summary))
    return figures


def _numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, int]:
    flat: dict[str, int] = {}
    for name, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_numbers(value, f"{prefix}{name}_"))
        elif isinstance(value, int) and not isinstance(value, bool) and not name.endswith("_ms"):
            flat[f"{prefix}{name}"] = value
    return flat


def maintenance_calls() -> MaintenanceCalls:
    """The calls the code location's ``wf_retention`` job, schedule and sensor, and ``wf_keys_rewrap``, run."""
    return MaintenanceCalls(
        due_bytes=due_bytes,
        apply_retention=apply_retention_figures,
        compact=compact_figures,
        rewrap_keys=rewrap_figures,
    )
