"""Runs launched from the CLI, executed by Dagster on the same instance the UI reads.

Threads run bottom-up in batches: one Dagster run per depth level of the tree, deepest
first, so a directory's context includes the READMEs its children produced in the level
before. Inside a run every turn handles all of the level's targets, with concurrent
provider calls. Finished threads found by their dedupe key are not launched at all.

Where the steps of a run execute is configuration (``WF_EXECUTOR``): in the launching
process (the default), or out of process (one process per step, one Kubernetes Job per
step, one Celery task per step). Out-of-process steps rebuild the job from
`reconstruct_profile_job` and open their runtime from the WF_ settings they inherit.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    DagsterInstance,
    ExecutorDefinition,
    JobDefinition,
    RunsFilter,
    build_reconstructable_job,
    execute_job,
    multiprocess_executor,
)
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from wf_pipeline.cas import open_cas
from wf_pipeline.compiler.assets import THREAD_TAG, targets_partitions, turn_asset_key
from wf_pipeline.compiler.definitions import build_definitions, resolve_job
from wf_pipeline.compiler.event_log import dynamic_partitions_snapshot
from wf_pipeline.compiler.sensors import LAUNCHED_BY_TAG
from wf_pipeline.config import SETTINGS_VARIABLES, Settings
from wf_pipeline.errors import ConfigError, RunError
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.profiles import ProfileCatalog, default_layers, load_catalog
from wf_pipeline.providers import Provider
from wf_pipeline.runtime import (
    RunPlan,
    RunSummary,
    RuntimeEnv,
    ThreadPlan,
    plan_run,
    plan_thread,
    prepare_resume,
    register_targets,
    resolve_target,
    scan_workspace,
    summarize_run,
    target_depth,
)
from wf_pipeline.tree import check_root
from wf_pipeline.workflows import load_builtin_workflows

Progress = Callable[[int, int], None]

# Run logs go to the instance (and the UI); the terminal shows progress, not engine chatter.
_QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


# The embedded default instance: SQLite storage in DAGSTER_HOME, and no usage telemetry
# (the machine may have no route out, and a CLI run should not phone home). Its event log
# is Dagster's SQLite one with batched writes (compiler/event_log.py), same files and schema.
# deploy/dagster-postgres.yaml is the PostgreSQL one.
def _embedded_instance_yaml(dagster_home: Path) -> str:
    return yaml.safe_dump(
        {
            "telemetry": {"enabled": False},
            # Step processes of out-of-process runs log to their console at this level (the
            # run's events are stored in full): engine chatter stays out of the terminal.
            "python_logs": {"python_log_level": "INFO"},
            "event_log_storage": {
                "module": "wf_pipeline.compiler.event_log",
                "class": "BatchedSqliteEventLogStorage",
                # Where Dagster's default SQLite storage keeps its event logs.
                "config": {"base_dir": str(dagster_home.resolve() / "history" / "runs")},
            },
        },
        sort_keys=False,
    )


# What earlier releases wrote: same storage files, without the batched event log. Such a
# home gets the current configuration; any other existing dagster.yaml is the user's.
_EARLIER_EMBEDDED_INSTANCE_YAML = "telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n"


def open_instance(settings: Settings) -> DagsterInstance:
    """The Dagster instance the CLI and the UI share; a dagster.yaml of the user's is left as it is."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists() or config.read_text(encoding="utf-8") == _EARLIER_EMBEDDED_INSTANCE_YAML:
        staged = config.with_name(f".dagster.yaml.{os.getpid()}")
        staged.write_text(_embedded_instance_yaml(settings.dagster_home))
        os.replace(staged, config)  # a killed first run never leaves a truncated config
    instance = DagsterInstance.from_config(str(settings.dagster_home))
    ready = settings.dagster_home / ".wf-instance-ready"
    if not ready.exists():
        # Dagster creates its SQLite storages in several steps and never completes an index
        # database that a killed first open left without tables; the migration `dagster
        # instance migrate` runs completes whatever is missing. Its progress output stays
        # off the terminal (and off --json stdout).
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            instance.upgrade(print_fn=lambda *_: None)
        ready.touch()
    return instance


def _catalog(settings: Settings, workspace_dir: Path | None) -> ProfileCatalog:
    load_builtin_workflows()  # the profiles' gates, offline turns and output sinks
    # Opening the CAS writes nothing; it only serves prompt_refs given as artifact ids.
    return load_catalog(
        default_layers(settings, workspace_dir or Path.cwd()), artifact_reader=open_cas(settings.cas_url).get
    )


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
    write_outputs: bool = True,
) -> RunSummary:
    """Document ``root`` with ``workflow_id``: plan, execute pending threads, write outputs.

    Without ``write_outputs`` (a backfill) the threads run and are recorded, and the
    outputs stay in the CAS.
    """
    check_root(root)  # bad paths fail before anything is written
    _check_provider_portable(settings, provider)
    catalog = _catalog(settings, workspace_dir)
    loaded = catalog.get(workflow_id)
    env = RuntimeEnv.open(settings, catalog=catalog, provider=provider)
    scan = scan_workspace(env, loaded, root)
    plan = plan_run(env, loaded, scan)
    run_ids = _execute(settings, env, catalog, plan, plan.pending, on_progress, workspace_dir=workspace_dir)
    return summarize_run(
        env,
        plan,
        started_ms=run_ids.started_ms,
        dagster_run_ids=run_ids.ids,
        out_dir=None if in_place or not write_outputs else (out_dir or settings.out_dir / scan.root.name),
        in_place=in_place and write_outputs,
        overwrite=overwrite,
    )


def sync_targets(
    settings: Settings, workflow_id: str, root: Path, *, workspace_dir: Path | None = None
) -> dict[str, object]:
    """Register a tree's directories as targets and as the workflow's partitions, bottom-up."""
    check_root(root)
    catalog = _catalog(settings, workspace_dir)
    loaded = catalog.get(workflow_id)
    env = RuntimeEnv.open(settings, catalog=catalog)
    targets = register_targets(env.records, scan_workspace(env, loaded, root))
    sync_partitions(open_instance(settings), workflow_id, [target.key for target in targets])
    return {
        "workflow_id": workflow_id,
        "partitions": targets_partitions(workflow_id).name,
        "targets": [target.key for target in targets],
        "levels": len({target_depth(target) for target in targets}),
    }


def resume_thread(
    settings: Settings,
    thread_id: str,
    *,
    out_dir: Path | None = None,
    workspace_dir: Path | None = None,
    provider: Provider | None = None,
) -> RunSummary:
    """Re-run a failed or interrupted thread from its first unfinished turn."""
    _check_provider_portable(settings, provider)
    catalog = _catalog(settings, workspace_dir)
    env = RuntimeEnv.open(settings, catalog=catalog, provider=provider)
    thread = env.records.get_thread(thread_id)
    if thread is None:
        raise RunError("RUN_UNKNOWN_THREAD", f"no thread {thread_id}")
    loaded = catalog.get(thread.workflow_id)
    prepare_resume(env, loaded, thread)  # the profile's failure_policy decides where it restarts
    target = resolve_target(env.records, thread.target_key)
    plan_entry = plan_thread(env, loaded, target, thread.target_node_id)
    scan = scan_workspace(env, loaded, target.root)
    plan = RunPlan(loaded=loaded, scan=scan, threads=(plan_entry,))
    run_ids = _execute(
        settings,
        env,
        catalog,
        plan,
        [] if plan_entry.reusable else [plan_entry],
        None,
        workspace_dir=workspace_dir,
        resume=plan_entry,
    )
    return summarize_run(
        env,
        plan,
        started_ms=run_ids.started_ms,
        dagster_run_ids=run_ids.ids,
        out_dir=out_dir or settings.out_dir / scan.root.name,
        in_place=False,
        overwrite=True,
    )


class _Launched:
    def __init__(self) -> None:
        self.started_ms = now_ms()
        self.ids: list[str] = []


def sync_partitions(instance: DagsterInstance, workflow_id: str, keys: Sequence[str]) -> None:
    """Make ``keys`` (one tree's targets, deepest first) the workflow's partitions, in that order.

    Dagster runs take contiguous partition ranges, so each depth level of a tree must be a
    contiguous block: the tree's keys are (re)added after every other key, in bottom-up
    order. Re-adding a key keeps its materialization history.
    """
    name = targets_partitions(workflow_id).name
    existing = instance.get_dynamic_partitions(name)
    ours = set(keys)
    desired = [key for key in existing if key not in ours] + list(keys)
    if existing == desired:
        return
    for key in existing:
        if key in ours:
            instance.delete_dynamic_partition(name, key)
    instance.add_dynamic_partitions(name, list(keys))


def unrecorded_keys(instance: DagsterInstance, plan: RunPlan) -> set[str]:
    """The plan's partition keys some turn asset has no finished materialization for."""
    workflow_id = plan.loaded.profile.workflow_id
    keys = {entry.target.key for entry in plan.threads}
    unfinished = {
        record.dagster_run.run_id
        for record in instance.get_run_records(filters=RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))
    }
    events = instance.event_log_storage
    missing: set[str] = set()
    for turn in plan.loaded.profile.ordered_turns():
        asset_key = turn_asset_key(workflow_id, turn.output_type)
        missing |= keys - instance.get_materialized_partitions(asset_key)
        attempts = events.get_latest_asset_partition_materialization_attempts_without_materializations(
            asset_key
        )
        missing |= {key for key, (run_id, _) in attempts.items() if key in keys and run_id in unfinished}
    return missing


def depth_levels(entries: Sequence[ThreadPlan]) -> list[list[ThreadPlan]]:
    """Threads grouped by directory depth, deepest level first (the order they must run in)."""
    levels: dict[int, list[ThreadPlan]] = {}
    for entry in entries:
        depth = target_depth(entry.target)
        levels.setdefault(depth, []).append(entry)
    return [levels[depth] for depth in sorted(levels, reverse=True)]


def _execute(
    settings: Settings,
    env: RuntimeEnv,
    catalog: ProfileCatalog,
    plan: RunPlan,
    pending: Sequence[ThreadPlan],
    on_progress: Progress | None,
    *,
    workspace_dir: Path | None,
    resume: ThreadPlan | None = None,
) -> _Launched:
    """One Dagster run per depth level that has pending threads, deepest level first.

    A level's run covers the level's contiguous partition range; its finished threads are
    reused inside the run at no provider cost. ``resume`` runs that one thread alone.
    """
    launched = _Launched()
    total = len(plan.threads)
    done = total - len(pending)
    if on_progress:
        on_progress(done, total)
    workflow_id = plan.loaded.profile.workflow_id
    instance = open_instance(settings)
    # A run killed after its turns committed but before Dagster recorded the step leaves
    # partitions unmaterialized, or "in progress" for good; their levels run again, at no
    # provider cost since every turn is reused.
    unrecorded = set() if resume is not None else unrecorded_keys(instance, plan)
    if not pending and not unrecorded:
        return launched
    sync_partitions(instance, workflow_id, [entry.target.key for entry in plan.threads])
    run_level = _level_runner(settings, env, catalog, workflow_id, workspace_dir or Path.cwd())
    pending_keys = {entry.target.key for entry in pending}
    with _quiet_dagster():
        for level in depth_levels(plan.threads):
            level_pending = sum(1 for entry in level if entry.target.key in pending_keys)
            if not level_pending and not any(entry.target.key in unrecorded for entry in level):
                continue
            if resume is not None:
                tags = {THREAD_TAG: resume.thread.thread_id, PARTITION_NAME_TAG: resume.target.key}
            else:
                tags = {
                    ASSET_PARTITION_RANGE_START_TAG: level[0].target.key,
                    ASSET_PARTITION_RANGE_END_TAG: level[-1].target.key,
                }
            # The bottom-up sensor leaves CLI runs alone: the CLI launches every level itself.
            run_id = run_level(instance, {**tags, "wf/targets": str(len(level)), LAUNCHED_BY_TAG: "cli"})
            launched.ids.append(run_id)
            done += level_pending
            if on_progress:
                on_progress(done, total)
    return launched


LevelRunner = Callable[[DagsterInstance, Mapping[str, str]], str]


def _level_runner(
    settings: Settings, env: RuntimeEnv, catalog: ProfileCatalog, workflow_id: str, workspace_dir: Path
) -> LevelRunner:
    """How one level's run executes under ``settings.executor``; the runner returns the run id."""
    if settings.executor == "in_process":
        # The steps use the env already open here, provider object included.
        job = resolve_job(build_definitions(catalog, env), workflow_id)

        def run_in_process(instance: DagsterInstance, tags: Mapping[str, str]) -> str:
            # The partitions were synced before the first level: the run reads them once.
            with dynamic_partitions_snapshot(instance, targets_partitions(workflow_id).name):
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, run_config=_QUIET_RUN_CONFIG, tags=dict(tags)
                )
            return result.run_id

        return run_in_process

    executor_definition(settings.executor)  # a missing integration fails before any run starts
    reconstructable_job = build_reconstructable_job(
        __name__,
        reconstruct_profile_job.__name__,
        reconstructable_kwargs={
            "workflow_id": workflow_id,
            "workspace_dir": str(workspace_dir.resolve()),
            "executor": settings.executor,
        },
    )
    run_config = {**_QUIET_RUN_CONFIG, "execution": {"config": executor_run_config(settings)}}

    def run_out_of_process(instance: DagsterInstance, tags: Mapping[str, str]) -> str:
        with settings_environment(settings):
            result = execute_job(
                reconstructable_job, instance=instance, run_config=run_config, tags=dict(tags)
            )
        return result.run_id

    return run_out_of_process


def reconstruct_profile_job(workflow_id: str, workspace_dir: str, executor: str) -> JobDefinition:
    """The workflow's job as every process of an out-of-process run rebuilds it.

    Settings come from the process environment, which the launching process filled from
    its own settings; each step opens its runtime (stores, provider) from them too.
    """
    settings = Settings.from_env(os.environ)
    job = resolve_job(build_definitions(_catalog(settings, Path(workspace_dir))), workflow_id)
    return job.with_executor_def(executor_definition(executor))


# Where each out-of-process executor lives, and the package that provides it.
_EXECUTOR_IMPORTS = {
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
}


def executor_definition(name: str) -> ExecutorDefinition:
    """The Dagster executor for a ``WF_EXECUTOR`` value other than ``in_process``."""
    if name == "multiprocess":
        return multiprocess_executor
    if name not in _EXECUTOR_IMPORTS:
        raise ConfigError("CONFIG_BAD_EXECUTOR", f"no out-of-process executor named {name!r}", executor=name)
    module_name, attribute, package = _EXECUTOR_IMPORTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "CONFIG_EXECUTOR_UNAVAILABLE",
            f"WF_EXECUTOR={name} needs the {package} package, in the release paired with the installed dagster",
            executor=name,
            package=package,
        ) from exc
    return getattr(module, attribute)


def executor_run_config(settings: Settings) -> dict[str, Any]:
    """The executor's run config: ``WF_MAX_PROCESSES``, then the ``WF_EXECUTOR_CONFIG`` file over it."""
    config: dict[str, Any] = {}
    if settings.max_processes is not None and settings.executor in ("multiprocess", "k8s"):
        config["max_concurrent"] = settings.max_processes
    if settings.executor_config is not None:
        config.update(_read_executor_config(settings.executor_config))
    return config


def _read_executor_config(path: Path) -> dict[str, Any]:
    """The ``execution: config:`` mapping of a run config YAML file.

    The same file serves ``dagster-celery worker start -y``, so Celery workers and the
    runs that feed them agree on the broker.
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            "CONFIG_BAD_EXECUTOR_CONFIG", f"cannot read the executor config {path}", path=str(path)
        ) from exc
    execution = loaded.get("execution") if isinstance(loaded, dict) else None
    config = execution.get("config") if isinstance(execution, dict) else None
    if not isinstance(loaded, dict) or set(loaded) != {"execution"} or not isinstance(config, dict):
        raise ConfigError(
            "CONFIG_BAD_EXECUTOR_CONFIG",
            f"the executor config {path} must hold exactly an execution: config: mapping",
            path=str(path),
        )
    return config


def _check_provider_portable(settings: Settings, provider: Provider | None) -> None:
    # An object lives in this process only; out-of-process steps build theirs from settings.
    if provider is not None and settings.executor != "in_process":
        raise RunError(
            "RUN_PROVIDER_NOT_PORTABLE",
            f"a provider object cannot reach steps of the {settings.executor} executor; "
            "configure the provider with WF_PROVIDER and WF_<PROVIDER>_<OPTION> instead",
            executor=settings.executor,
        )


@contextmanager
def settings_environment(settings: Settings) -> Iterator[None]:
    """Make the process environment say exactly ``settings`` while processes are started.

    Child processes inherit the environment; a settings variable the settings leave unset
    is removed, so a stale value cannot reach the steps either.
    """
    wanted = settings.to_env()
    with _environment({name: wanted.get(name) for name in SETTINGS_VARIABLES}):
        yield


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) these variables for the block; restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# A level run covers hundreds of partitions. Without these, Dagster writes one "planned"
# event per partition and asset before the run starts, and stores a step's per-partition
# materializations one by one; with them, planned events are one per run and a step's
# materializations reach the event log as one batch. Failed threads stay visible in our
# records and the run summary.
_BATCHING_VARIABLES = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


@contextmanager
def _quiet_dagster() -> Iterator[None]:
    """For the duration of CLI runs: no engine chatter or preview warnings in the terminal,
    and Dagster's event batching on (`_BATCHING_VARIABLES`)."""
    logger = logging.getLogger("dagster")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with _environment(_BATCHING_VARIABLES), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
