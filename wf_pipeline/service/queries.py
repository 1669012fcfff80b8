"""Read-side use cases: scanning a tree, listing and showing threads, listing and showing profiles.

Each returns plain JSON-ready values (ids and digests, never prompt text, context payload
or model output); the CLI formats them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.profiles import catalog_rows, describe, load_profile_file
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.queries import list_threads as _list_threads
from wf_pipeline.runtime.queries import record_scan, thread_details
from wf_pipeline.settings import Settings
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

    Raises ``RUN_UNKNOWN_THREAD`` when no thread has that id.
    """
    with _open_env(settings) as env:
        return thread_details(env, thread_id)


def list_profiles(settings: Settings, workspace_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per loaded profile: ``{workflow_id, version, layer, source, title}``.

    Layers are the workspace (``workspace_dir``, default the working directory), the user
    config folder and the built-in profiles. Raises the loader's ``PROFILE_*`` errors.
    """
    return catalog_rows(load_profiles(settings, workspace_dir or Path.cwd()))


def validate_profiles(
    settings: Settings, file: Path | None = None, workspace_dir: Path | None = None
) -> dict[str, list[str]]:
    """Validate one profile file, or every profile of every layer; returns ``{"valid": [workflow ids]}``.

    Raises the loader's ``PROFILE_*`` error for the first invalid profile.
    """
    if file is not None:
        load_builtin_workflows()  # the file names the workflows' gate types
        return {"valid": [load_profile_file(file, "workspace").profile.workflow_id]}
    return {"valid": [row["workflow_id"] for row in list_profiles(settings, workspace_dir)]}


def show_profile(settings: Settings, workflow_id: str, workspace_dir: Path | None = None) -> dict[str, Any]:
    """The resolved description of one workflow's profile (turns, gates, budgets, digests).

    Raises ``PROFILE_NOT_FOUND`` (or the loader's other ``PROFILE_*`` errors).
    """
    return describe(load_profiles(settings, workspace_dir or Path.cwd()).get(workflow_id))


def _open_env(settings: Settings) -> RuntimeEnv:
    # The catalog comes from the one loader that registers the built-in workflows first.
    return RuntimeEnv.open(settings, catalog=load_profiles(settings, Path.cwd()))
