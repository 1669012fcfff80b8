"""Use cases that run threads: run, backfill, resume, and registering a tree's targets.

Plain functions over the runtime and the compiler's launch API; the CLI and any other
front end call these and format what they return.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from wf_pipeline.compiler import targets_partitions
from wf_pipeline.compiler.launch.executors import check_launch_settings, load_profiles
from wf_pipeline.compiler.launch.instance import open_instance
from wf_pipeline.compiler.launch.levels import Progress, launch_levels, sync_partitions
from wf_pipeline.compiler.launch.storage_errors import instance_storage_errors
from wf_pipeline.errors import (
    CAS_ARTIFACT_EXPIRED,
    CAS_KEY_DESTROYED,
    RUN_BAD_ARGUMENTS,
    RUN_PROVIDER_NOT_PORTABLE,
    RUN_THREAD_STALE,
    RUN_UNKNOWN_THREAD,
    RUN_WORKFLOW_REQUIRED,
    TREE_PATH_MISSING,
    CasError,
    RunError,
    TreeError,
)
from wf_pipeline.profiles import ProfileCatalog
from wf_pipeline.providers import Provider
from wf_pipeline.runtime import (
    RunPlan,
    RunSummary,
    RuntimeEnv,
    find_tree,
    latest_completed_threads,
    output_directory,
    plan_for_thread,
    plan_run,
    prepare_resume,
    register_targets,
    register_tree,
    resolve_target,
    restrict_plan,
    scan_workspace,
    summarize_run,
    target_depth,
    write_thread_output,
)
from wf_pipeline.runtime.pinning import thread_profile
from wf_pipeline.runtime.threads import target_frame_id
from wf_pipeline.service.interrupts import stop_on_signals
from wf_pipeline.settings import Settings
from wf_pipeline.tree import check_root


def run_workflow(
    settings: Settings,
    workflow_id: str,
    root: Path,
    *,
    out_dir: Path | None = None,
    in_place: bool = False,
    overwrite: bool = False,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
    on_progress: Progress | None = None,
    only_targets: Collection[str] | None = None,
) -> RunSummary:
    """Run ``workflow_id`` over the tree at ``root``: plan, execute pending threads, write outputs.

    Args: ``out_dir`` is where outputs mirror the tree; ``in_place`` writes into the tree
    itself, replacing existing outputs only with ``overwrite``. Either one is recorded
    as the tree's output place (as `sync_targets` does); with neither, the place recorded
    earlier applies, by default ``<WF_OUT>/<tree key>``. ``workspace_dir`` is the
    workspace profile layer (default: the working directory); ``provider`` replaces the
    configured one (in-process executor only); ``on_progress(done, total)`` counts threads;
    ``only_targets`` (target paths, ``.`` for the root) runs and reports those targets only
    (`wf_pipeline.runtime.restrict_plan`; what an agent's policy gives the workflow).

    Returns the run's `RunSummary` (threads, provider calls, Dagster run ids, out_dir).
    Raises ``TREE_*`` for a bad root (before anything is written), ``PROFILE_*`` for
    an unknown workflow, ``RUN_BAD_ARGUMENTS`` for ``overwrite`` without ``in_place`` or
    both ``out_dir`` and ``in_place``, ``RUN_PROVIDER_NOT_PORTABLE`` for a provider object
    with an out-of-process executor, and the executor's ``CONFIG_*`` errors
    (``CONFIG_BAD_EXECUTOR_CONFIG``, ``CONFIG_EXECUTOR_UNAVAILABLE``,
    ``CONFIG_STORE_NOT_SHARED``), all before anything is written (an output that cannot be
    written is its thread's ``output_error`` in the summary, ``RUN_OUTPUT_WRITE_FAILED``
    with the operating system's reason); ``RUN_INSTANCE_STORAGE_ERROR`` when the Dagster
    instance's storage fails (full disk, I/O error); ``RUN_INTERRUPTED`` when SIGTERM or
    SIGINT stopped the run (its unfinished threads are then marked failed;
    `wf_pipeline.service.interrupts`).
    """
    _check_output_arguments(out_dir, in_place, overwrite)
    check_root(root)  # bad paths fail before anything is written
    _check_launchable(settings, provider)
    catalog = _catalog(settings, workspace_dir)
    loaded = catalog.get(workflow_id)
    with RuntimeEnv.open(settings, catalog=catalog, provider=provider) as env, stop_on_signals(env) as stop:
        if out_dir is not None or in_place:
            # Before the scan: an output folder inside the tree is left out of it.
            register_tree(env.records, root, out_dir=out_dir, in_place=in_place, overwrite=overwrite)
        scan = scan_workspace(env, loaded, root)
        plan = plan_run(env, loaded, scan)
        if only_targets is not None:
            plan = restrict_plan(plan, only_targets)
        stop.thread_ids = [entry.thread.thread_id for entry in plan.threads]
        stop.workflow_id, stop.target_keys = workflow_id, [entry.target.key for entry in plan.threads]
        with instance_storage_errors(settings):
            launched = launch_levels(
                settings, env, catalog, plan, plan.pending, on_progress, workspace_dir=workspace_dir
            )
        summary = summarize_run(env, plan, started_ms=launched.started_ms, dagster_run_ids=launched.ids)
        return replace(summary, warnings=tuple(warning.to_json() for warning in scan.warnings))


def backfill(
    settings: Settings,
    workflow_id: str,
    root: Path,
    *,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
    on_progress: Progress | None = None,
) -> RunSummary:
    """Run every pending thread of the tree in batched runs, one per depth level.

    The outputs are written where the tree's outputs go (recorded by `sync_targets`,
    else ``<WF_OUT>/<tree key>``), as by every launch path. Arguments, return value and
    errors are those of `run_workflow`.
    """
    return run_workflow(
        settings,
        workflow_id,
        root,
        workspace_dir=workspace_dir,
        provider=provider,
        on_progress=on_progress,
    )


def _check_output_arguments(out_dir: Path | None, in_place: bool, overwrite: bool) -> None:
    if overwrite and not in_place:
        raise RunError(
            RUN_BAD_ARGUMENTS,
            "overwrite only applies to in-place writing; an output folder is always written in full",
        )
    if out_dir is not None and in_place:
        raise RunError(RUN_BAD_ARGUMENTS, "choose an output folder or in-place writing, not both")


def resume_thread(
    settings: Settings,
    thread_id: str,
    *,
    out_dir: Path | None = None,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
) -> RunSummary:
    """Re-run a failed or interrupted thread from its first unfinished turn, and write its output.

    The workflow comes from the thread's record. ``out_dir``, when given, becomes the
    tree's output place; otherwise the place recorded for the tree applies. Returns the
    `RunSummary` of that one thread. Raises ``RUN_UNKNOWN_THREAD`` (figure: none beyond
    the id in the message), ``RUN_THREAD_STALE`` when the profile changed since a thread
    recorded before version pinning was made (figures: the thread's and the profile's frame
    ids), ``PROFILE_SNAPSHOT_INVALID`` or ``CAS_*`` when a pinned snapshot cannot be read back,
    ``RUN_PROVIDER_NOT_PORTABLE``, the executor's ``CONFIG_*`` errors (before anything is
    written), and the errors of `run_workflow`.

    The thread runs with the profile it started with (`wf_pipeline.runtime.pinning`): the
    current one while its code version is the thread's, else the thread's pinned snapshot,
    whatever the profile files say now; its Dagster steps are built from that profile too.
    """
    _check_launchable(settings, provider)
    catalog = _catalog(settings, workspace_dir)
    with RuntimeEnv.open(settings, catalog=catalog, provider=provider) as env, stop_on_signals(env) as stop:
        stop.thread_ids = [thread_id]
        thread = env.records.get_thread(thread_id)
        if thread is None:
            raise RunError(RUN_UNKNOWN_THREAD, f"no thread {thread_id}")
        current = catalog.get(thread.workflow_id)
        target = resolve_target(env.records, thread.target_key)
        # The profile the thread started with (version pinning), even if the files changed since.
        loaded = thread_profile(env, thread, current)
        if loaded is None:
            current_frame_id = target_frame_id(current)
            if thread.target_frame_id != current_frame_id:
                # Recorded before pinning, and the profile changed since (its code version is
                # part of the thread's identity): resuming would start another thread, not this
                # one. Refused before anything moves.
                raise RunError(
                    RUN_THREAD_STALE,
                    f"thread {thread_id} was made for {thread.target_frame_id}; {current.profile.workflow_id} "
                    f"now makes {current_frame_id}: run the tree again with wf run",
                    thread_id=thread_id,
                    thread_frame_id=thread.target_frame_id,
                    current_frame_id=current_frame_id,
                )
            loaded = current
        if loaded is not current:
            # The run's steps are built from the pinned profile (`launch_levels`, `level_runner`).
            catalog = replace(catalog, profiles={**catalog.profiles, loaded.workflow_id: loaded})
        if out_dir is not None:
            register_tree(env.records, target.root, out_dir=out_dir)
        prepare_resume(env, loaded, thread)  # the profile's failure_policy decides where it restarts
        resumed = env.records.get_thread(thread_id) or thread
        plan_entry = plan_for_thread(env, loaded, target, resumed)
        scan = scan_workspace(env, loaded, target.root)
        plan = RunPlan(loaded=loaded, scan=scan, threads=(plan_entry,))
        with instance_storage_errors(settings):
            launched = launch_levels(
                settings,
                env,
                catalog,
                plan,
                [] if plan_entry.reusable else [plan_entry],
                None,
                workspace_dir=workspace_dir,
                resume=plan_entry,
            )
        # A resumed thread keeps its id whatever its children's outputs are now: report that thread.
        return summarize_run(
            env, plan, started_ms=launched.started_ms, dagster_run_ids=launched.ids, replanned=False
        )


def sync_targets(
    settings: Settings,
    workflow_id: str | None,
    root: Path,
    *,
    workspace_dir: Path | None = None,
    out_dir: Path | None = None,
    in_place: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Register a tree, its directories as targets and as the workflow's partitions, bottom-up.

    ``workflow_id`` may be None when the catalog holds exactly one workflow. ``out_dir``
    or ``in_place`` (with ``overwrite``) records where the tree's outputs go, for every
    launch path (UI runs and backfills, sensors, the CLI); with neither, an earlier choice
    is kept, by default ``<WF_OUT>/<tree key>``. Returns ``{"workflow_id", "partitions"
    (the partitions definition's name), "tree" (key), "root", "out_dir", "in_place",
    "targets" (keys, deepest first), "levels" (count), "warnings" (the scan's, ``{code, path,
    message}`` each)}``. Raises ``TREE_*`` for a bad
    root, ``RUN_BAD_ARGUMENTS`` for contradicting output options, ``RUN_WORKFLOW_REQUIRED``
    (figure: workflows) when several workflows could be meant, and ``PROFILE_*`` for an
    unknown one.
    """
    _check_output_arguments(out_dir, in_place, overwrite)
    check_root(root)
    catalog = _catalog(settings, workspace_dir)
    workflow_id = workflow_id or only_workflow(catalog)
    loaded = catalog.get(workflow_id)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        explicit = out_dir is not None or in_place
        # Before the scan: an output folder inside the tree is left out of it.
        tree = register_tree(
            env.records,
            root,
            out_dir=out_dir,
            in_place=in_place,
            overwrite=overwrite,
            keep_outputs=not explicit,
        )
        scan = scan_workspace(env, loaded, root)
        targets = register_targets(env.records, scan, loaded.profile.target_kind)
        outputs = output_directory(env, tree, ".")
    with instance_storage_errors(settings):
        sync_partitions(open_instance(settings), workflow_id, [target.key for target in targets])
    return {
        "workflow_id": workflow_id,
        "partitions": targets_partitions(workflow_id).name,
        "tree": tree.tree_key,
        "root": tree.root_path,
        "out_dir": str(outputs),
        "in_place": tree.in_place,
        "targets": [target.key for target in targets],
        "levels": len({target_depth(target) for target in targets}),
        "warnings": [warning.to_json() for warning in scan.warnings],
    }


def export_outputs(
    settings: Settings,
    tree_name: str,
    *,
    out_dir: Path | None = None,
    workflow_id: str | None = None,
    workspace_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the latest outputs of a registered tree from the CAS, without running anything.

    For every recorded target of the tree, the output of its latest completed thread
    (`wf_pipeline.runtime.latest_completed_threads`) is written through the workflow's
    output sink. Only the records and the CAS are read: a tree that has moved, been
    deleted (named by its key) or edited since its last run exports that run's outputs.
    ``out_dir`` overrides the tree's recorded place for this export only (it is not recorded).

    Returns ``{"workflow_id", "tree" (key), "out_dir", "written" (paths), "missing"
    (target paths with no completed output), "expired" (``{"path", "thread_id",
    "artifact_id", "code": "CAS_ARTIFACT_EXPIRED", "message"}`` for each directory whose
    completed output retention deleted), "shredded" (the same, with ``CAS_KEY_DESTROYED``,
    for each directory whose completed output was crypto-shredded: its KEK was destroyed)}``. Raises ``RUN_UNKNOWN_TREE`` for a name no
    tree is registered under, ``TREE_PATH_MISSING`` when the outputs go into the tree
    itself (in place) and its root is gone (give ``out_dir``), ``RUN_WORKFLOW_REQUIRED``,
    ``PROFILE_*``, ``RUN_OUTPUT_WRITE_FAILED``.
    """
    catalog = _catalog(settings, workspace_dir)
    workflow_id = workflow_id or only_workflow(catalog)
    loaded = catalog.get(workflow_id)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        tree = find_tree(env.records, tree_name)
        if out_dir is not None:
            tree = tree.model_copy(
                update={"out_dir": str(out_dir.resolve()), "in_place": False, "overwrite": False}
            )
        if tree.in_place and not Path(tree.root_path).is_dir():
            # In place means into the tree: a tree that is gone is not made again.
            raise TreeError(
                TREE_PATH_MISSING,
                f"{tree.root_path} does not exist; its outputs go into the tree itself: "
                "name a folder to export into with --out",
                path=tree.root_path,
            )
        written, missing, expired, shredded = [], [], [], []
        for target_path, thread in latest_completed_threads(env, loaded, tree).items():
            try:
                path = write_thread_output(env, loaded, tree, thread) if thread is not None else None
            except CasError as exc:
                if exc.code not in (CAS_ARTIFACT_EXPIRED, CAS_KEY_DESTROYED):
                    raise
                # Deleted by retention or shredded: that directory's failure, not "no output yet".
                (expired if exc.code == CAS_ARTIFACT_EXPIRED else shredded).append(
                    {
                        "path": target_path,
                        "thread_id": thread.thread_id if thread else None,
                        "artifact_id": exc.details.get("artifact_id"),
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
                continue
            if path is None:
                missing.append(target_path)
            else:
                written.append(str(path))
        return {
            "workflow_id": workflow_id,
            "tree": tree.tree_key,
            "out_dir": str(output_directory(env, tree, ".")),
            "written": written,
            "missing": missing,
            "expired": expired,
            "shredded": shredded,
        }


def only_workflow(catalog: ProfileCatalog) -> str:
    """The workflow a command that names none means: the only loaded per-directory profile.

    Profiles that run on the root only (``targets: {kind: root}``, such as
    ``architecture_notes_v1``) are never taken implicitly: they are always named. So the
    built-in layer, which holds one per-directory workflow (the docs writer), keeps
    ``wf targets sync PATH`` and ``wf export TREE`` working without ``--workflow``.

    Raises:
        RunError: ``RUN_WORKFLOW_REQUIRED`` (with the ids to choose from: the per-directory
            profiles, or every profile when none is) when there is no single one.
    """
    workflows = [loaded.profile.workflow_id for loaded in catalog.all()]
    per_directory = [
        loaded.profile.workflow_id for loaded in catalog.all() if loaded.profile.target_kind == "directory"
    ]
    # Several per-directory profiles: the user chooses among them; none: among every profile.
    choices = per_directory or workflows
    if len(choices) != 1:
        raise RunError(
            RUN_WORKFLOW_REQUIRED,
            f"name the workflow: {len(choices)} are loaded ({', '.join(choices) or 'none'})",
            workflows=choices,
        )
    return choices[0]


def _catalog(settings: Settings, workspace_dir: Path | None) -> ProfileCatalog:
    return load_profiles(settings, workspace_dir or Path.cwd())


def _check_launchable(settings: Settings, provider: Provider | None) -> None:
    # Every use case that launches runs refuses what no run could use, before writing anything.
    _check_provider_portable(settings, provider)
    check_launch_settings(settings)


def _check_provider_portable(settings: Settings, provider: Provider | None) -> None:
    # An object lives in this process only; out-of-process steps build theirs from settings.
    if provider is not None and settings.executor != "in_process":
        raise RunError(
            RUN_PROVIDER_NOT_PORTABLE,
            f"a provider object cannot reach steps of the {settings.executor} executor; "
            "configure the provider with WF_PROVIDER and WF_<PROVIDER>_<OPTION> instead",
            executor=settings.executor,
        )
