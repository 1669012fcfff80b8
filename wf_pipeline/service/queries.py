"""Read-side use cases: scanning a tree, listing and showing threads, listing and showing profiles.

Each returns plain JSON-ready values (ids and digests, never prompt text, context payload
or model output); the CLI formats them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.errors import ProfileError
from wf_pipeline.profiles import (
    ProfileProblem,
    catalog_rows,
    default_layers,
    describe,
    describe_resolved,
    load_profile_file,
)
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.runtime import RuntimeEnv, sample_render_errors
from wf_pipeline.runtime.queries import gate_findings, record_scan, thread_details
from wf_pipeline.runtime.queries import list_threads as _list_threads
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.query import archive_location
from wf_pipeline.tree import scan_tree
from wf_pipeline.workflows import load_builtin_workflows


def scan(settings: Settings, root: Path) -> dict[str, Any]:
    """Scan the tree at ``root`` and record its nodes' Merkle ids in the record store.

    Returns ``{"root", "root_id", "directories", "files", "omitted" (count per reason),
    "warnings" ([{code, path, message}])}``; symlinks outside the root are followed only
    with ``settings.follow_external_links``. Raises ``TREE_*`` for a bad root and the
    record store's ``RECORD_*`` errors.
    """
    tree = scan_tree(root, follow_external_links=settings.follow_external_links)
    with _open_env(settings) as env:
        return record_scan(env, tree)


def list_threads(settings: Settings, workflow_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded threads, each ``{thread_id, workflow_id, target, path, status, last_turn_seq,
    updated_at_ms}`` (ms since the epoch); only ``workflow_id``'s when given (the workflow is
    read from each thread's record, never assumed)."""
    with _open_env(settings) as env:
        return _list_threads(env, workflow_id)


def show_thread(settings: Settings, thread_id: str) -> dict[str, Any]:
    """One thread's record with its turns in seq order (every attempt), gate outcomes and artifact ids.

    A thread ``wf compact`` archived is read from the archive (``$WF_HOME/archive``) and
    marked ``"archived": true`` with its ``compaction`` (`runtime.queries.thread_details`).
    Raises ``RUN_UNKNOWN_THREAD`` when no thread has that id, live or archived, and
    ``RETENTION_ARCHIVE_ERROR`` when an archive file cannot be read.
    """
    with _open_env(settings) as env:
        return thread_details(env, thread_id, RecordArchive(Path(archive_location(settings))))


def explain_gates(settings: Settings, thread_id: str, turn_id: str | None = None) -> dict[str, Any]:
    """The findings of each turn's latest gate verdict in one thread, grouped by rule id.

    Returns ``{"thread_id", "workflow_id", "turns": [{"turn_id", "attempt", "gate_id",
    "outcome", "rules_digest", "rules": {rule_id: [{"code", "pointer", "hint"}]}}]}``
    (`runtime.queries.gate_findings`); only ``turn_id``'s verdict when given. Raises
    ``RUN_UNKNOWN_THREAD`` for an unknown thread, ``RUN_UNKNOWN_TURN`` for a turn the
    thread's workflow does not have, and the record store's ``RECORD_*`` errors.
    """
    with _open_env(settings) as env:
        return gate_findings(env, thread_id, turn_id)


def list_profiles(settings: Settings, workspace_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per loaded profile: ``{workflow_id, version, layer, source, title}``.

    Layers are the workspace (``workspace_dir``, default the working directory), the user
    config folder and the built-in profiles. Raises the loader's ``PROFILE_*`` errors.
    """
    return catalog_rows(load_profiles(settings, workspace_dir or Path.cwd()))


def validate_profiles(
    settings: Settings, file: Path | None = None, workspace_dir: Path | None = None
) -> dict[str, Any]:
    """Validate one profile file, or every profile file of every layer, and render each template.

    A file that loads is rendered against a sample context (`runtime.sample_render_errors`),
    so a template that fails on every target is caught here rather than in a run.

    Args:
        settings: the settings naming the user layer and the CAS (for ``sha256:`` prompt refs).
        file: one file to check instead of every layer.
        workspace_dir: the workspace layer's folder (default: the working directory).

    Returns:
        ``{"valid": [workflow ids], "invalid": [{"path", "layer", "code", "message"}]}``, each
        bad file (or failing template) once, in layer and path order. Raises nothing for a
        bad profile; ``CONFIG_*`` and ``CAS_INVALID_URL`` for bad settings.
    """
    load_builtin_workflows()  # profiles name the workflows' gate types
    if file is not None:
        # The file is a workspace profile: its bases and fragments come from the usual layers.
        search = default_layers(settings, workspace_dir or Path.cwd())
        try:
            loaded_profiles = [load_profile_file(file, "workspace", search=search)]
            problems: list[ProfileProblem] = []
        except ProfileError as exc:
            loaded_profiles, problems = [], [ProfileProblem(Path(file), "workspace", exc)]
    else:
        # The problems are the result: logging them too would report each bad file twice.
        catalog = load_profiles(settings, workspace_dir or Path.cwd(), warn=False)
        loaded_profiles, problems = catalog.all(), list(catalog.problems)
    valid: list[str] = []
    for loaded in loaded_profiles:
        render_errors = sample_render_errors(loaded)
        problems.extend(ProfileProblem(loaded.source_path, loaded.layer, error) for error in render_errors)
        if not render_errors:
            valid.append(loaded.workflow_id)
    return {"valid": valid, "invalid": [problem.to_dict() for problem in problems]}


def show_profile(
    settings: Settings, workflow_id: str, workspace_dir: Path | None = None, *, resolved: bool = False
) -> dict[str, Any]:
    """The resolved description of one workflow's profile (turns, gates, budgets, digests).

    Args:
        settings: the settings naming the user layer and the CAS.
        workflow_id: the workflow to show.
        workspace_dir: the workspace layer's folder (default: the working directory).
        resolved: return `wf_pipeline.profiles.describe_resolved` instead: the fully resolved
            profile and, per field, the layer and base, fragment or profile file it came from.

    Raises ``PROFILE_NOT_FOUND`` (or the loader's other ``PROFILE_*`` errors).
    """
    loaded = load_profiles(settings, workspace_dir or Path.cwd()).get(workflow_id)
    return describe_resolved(loaded) if resolved else describe(loaded)


def _open_env(settings: Settings) -> RuntimeEnv:
    # The catalog comes from the one loader that registers the built-in workflows first.
    # Queries read records (and an export reads outputs): the keyring opens only if a sealed
    # payload is read, so listing threads neither needs the master key nor makes one.
    return RuntimeEnv.open(settings, catalog=load_profiles(settings, Path.cwd()), check_keys=False)
