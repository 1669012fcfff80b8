"""Use cases over the content-addressed store: verify every object, repair corrupt ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.errors import masked_url
from wf_pipeline.providers import Provider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.repair import Progress, repair_objects, verify_store
from wf_pipeline.settings import Settings


def verify_cas(
    settings: Settings,
    *,
    repair: bool = False,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Check every CAS object against its id; quarantine corrupt ones; with ``repair``, regenerate them.

    Repair runs the turns that linked each corrupt or missing object again, in this process, with
    the configured provider (`wf_pipeline.runtime.repair`); it needs the workflows'
    profiles (``workspace_dir`` is the workspace layer, default the working directory).

    Args:
        settings: the stores and the provider.
        repair: run the producing turns again.
        workspace_dir: the workspace profile layer.
        provider: replaces the configured provider.
        on_progress: called with (objects checked, objects in total).

    Returns:
        ``{"cas_url" (password masked), "checked" (objects), "bytes_checked" (bytes),
        "corrupt": [{"artifact_id", "size" (bytes), "quarantined_to", "code"}], "shredded" (count of
        objects whose KEK was destroyed, not checked), "missing" (ids the
        records refer to that the store lacks, e.g. quarantined earlier), "repair" (bool),
        "outcomes": [{"artifact_id", "status" (repaired | replaced | unrepaired), "reason",
        "threads"}], "unrepaired" (count), "ok"}``. ``ok`` is False when a corrupt or
        missing object was found and, with ``repair``, when one stays unrepaired.

    Raises:
        CasError: ``CAS_INVALID_URL``, ``CAS_BACKEND_ERROR``.
        RecordError: ``RECORD_*`` from the record store.
        ProfileError, ConfigError, ProviderError: as `RuntimeEnv.open`.
    """
    # The workflows' plug-ins register their gate types before the profiles load.
    catalog = load_profiles(settings, workspace_dir or Path.cwd())
    with RuntimeEnv.open(settings, catalog=catalog, provider=provider) as env:
        report = verify_store(env, on_progress)
        lost = [c.artifact_id for c in report.corrupt] + list(report.missing)
        outcomes = repair_objects(env, lost) if repair else []
    unrepaired = sum(1 for o in outcomes if o.status == "unrepaired") if repair else len(lost)
    return {
        "cas_url": masked_url(settings.cas_url),
        "checked": report.checked,
        "bytes_checked": report.bytes_checked,
        "corrupt": [
            {"artifact_id": c.artifact_id, "size": c.size, "quarantined_to": c.quarantined_to, "code": c.code}
            for c in report.corrupt
        ],
        "missing": list(report.missing),
        "shredded": len(report.shredded),
        "repair": repair,
        "outcomes": [
            {"artifact_id": o.artifact_id, "status": o.status, "reason": o.reason, "threads": list(o.threads)}
            for o in outcomes
        ],
        "unrepaired": unrepaired,
        "ok": unrepaired == 0,
    }
