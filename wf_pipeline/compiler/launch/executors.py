"""Where the steps of a run execute: the Dagster executor for ``WF_EXECUTOR`` and its run config.

Out-of-process steps (one process per step, one Kubernetes Job per step, one Celery task
per step) rebuild the workflow's job with `reconstruct_profile_job` and open their
runtime from the run's resource config (`runtime_run_config`): the settings reach them
through Dagster's own configuration, never through the launching process's environment.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, JobDefinition, multiprocess_executor
from dagster._config import EvaluationError, process_config

from wf_pipeline.cas.memory import MEMORY_SCHEME as CAS_MEMORY_SCHEME
from wf_pipeline.cas.registry import url_scheme
from wf_pipeline.compiler.definitions import build_definitions, resolve_job
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.crypto.open import artifact_reader
from wf_pipeline.errors import (
    CONFIG_BAD_EXECUTOR,
    CONFIG_BAD_EXECUTOR_CONFIG,
    CONFIG_EXECUTOR_UNAVAILABLE,
    CONFIG_STORE_NOT_SHARED,
    ConfigError,
)
from wf_pipeline.profiles import ProfileCatalog, default_layers, load_catalog
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.profiles.snapshot import SNAPSHOT_ROLE, load_profile_snapshot
from wf_pipeline.records.connection import is_memory_sqlite, parse_url
from wf_pipeline.records.memory import MEMORY_SCHEME as RECORDS_MEMORY_SCHEME
from wf_pipeline.settings import ENVIRONMENT_VARIABLES, Settings
from wf_pipeline.telemetry.store import per_process_url
from wf_pipeline.workflows import load_builtin_workflows

# Where each out-of-process executor lives, and the package that provides it.
_EXECUTOR_IMPORTS = {
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
}


def executor_definition(name: str) -> ExecutorDefinition:
    """The Dagster executor for a ``WF_EXECUTOR`` value other than ``in_process``.

    Raises ``CONFIG_BAD_EXECUTOR`` for an unknown name and ``CONFIG_EXECUTOR_UNAVAILABLE``
    (figures: executor, package) when the integration package is not installed.
    """
    if name == "multiprocess":
        return multiprocess_executor
    if name not in _EXECUTOR_IMPORTS:
        raise ConfigError(CONFIG_BAD_EXECUTOR, f"no out-of-process executor named {name!r}", executor=name)
    module_name, attribute, package = _EXECUTOR_IMPORTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            CONFIG_EXECUTOR_UNAVAILABLE,
            f"WF_EXECUTOR={name} needs the {package} package, in the release paired with the installed dagster",
            executor=name,
            package=package,
        ) from exc
    return getattr(module, attribute)


def executor_run_config(settings: Settings) -> dict[str, Any]:
    """The executor's run config: ``WF_MAX_PROCESSES``, then the ``WF_EXECUTOR_CONFIG`` file over it.

    Returns the ``execution: config:`` mapping. Raises ``CONFIG_BAD_EXECUTOR_CONFIG``
    (figure: path) when the file cannot be read or has another shape.
    """
    config: dict[str, Any] = {}
    if settings.max_processes is not None and settings.executor in ("multiprocess", "k8s"):
        config["max_concurrent"] = settings.max_processes
    if settings.executor_config is not None:
        config.update(_read_executor_config(settings.executor_config))
    return config


def check_launch_settings(settings: Settings) -> None:
    """Refuse executor settings no run can start with, before anything is planned or recorded.

    Args: ``settings``, whose ``executor``, ``executor_config``, ``max_processes``,
    ``cas_url`` and ``records_url`` are judged. Returns None.

    Raises ``CONFIG_BAD_EXECUTOR_CONFIG`` (figures: executor, path) for a
    ``WF_EXECUTOR_CONFIG`` given to the in-process executor, which takes no config, and
    the errors of `executor_definition`, `validated_executor_config` and
    `check_stores_shared` for an out-of-process one.
    """
    if settings.executor == "in_process":
        if settings.executor_config is not None:
            # A file the user set and that does nothing would be a silent no-op.
            raise ConfigError(
                CONFIG_BAD_EXECUTOR_CONFIG,
                f"the in_process executor takes no config, but WF_EXECUTOR_CONFIG names "
                f"{settings.executor_config}; unset it or choose an out-of-process WF_EXECUTOR",
                executor=settings.executor,
                path=str(settings.executor_config),
            )
        return
    validated_executor_config(settings)
    check_stores_shared(settings)


def validated_executor_config(settings: Settings) -> dict[str, Any]:
    """`executor_run_config`, checked against the config schema of the executor's definition.

    The check is Dagster's own (``process_config``, which ``execute_job`` applies to the
    run's ``execution: config:``), so a bad entry is refused before any run starts rather
    than as a Dagster traceback inside one. Returns the ``execution: config:`` mapping as
    given (Dagster fills in its defaults itself). Raises ``CONFIG_BAD_EXECUTOR_CONFIG``
    (figures: executor, path (None without a file), entries (the offending config paths,
    ``:``-separated), errors (Dagster's messages)) for a wrong type, an unknown or a
    missing required entry, and the errors of `executor_definition` and
    `executor_run_config`.
    """
    definition = executor_definition(settings.executor)
    config = executor_run_config(settings)
    config_type = definition.config_schema.config_type
    if config_type is None:  # typed optional; an executor declaring no schema has Any here
        return config
    # Dagster's public API validates a whole job's run config only; process_config is that
    # check (`ResolvedRunConfig.build` calls it) applied to one executor definition's schema.
    result = process_config(config_type, config)
    if result.success:
        return config
    errors = list(result.errors or [])
    path = settings.executor_config
    source = str(path) if path is not None else "built from WF_MAX_PROCESSES"
    raise ConfigError(
        CONFIG_BAD_EXECUTOR_CONFIG,
        f"the executor config {source} does not fit the {settings.executor} "
        f"executor: {'; '.join(error.message for error in errors)}",
        executor=settings.executor,
        path=None if path is None else str(path),
        entries=[entry for error in errors for entry in _offending_entries(error)],
        errors=[error.message for error in errors],
    )


def check_stores_shared(settings: Settings) -> None:
    """Refuse a store held in this process's memory when the steps run in other processes.

    Each step process would open its own empty store: the steps would find no thread, call
    no provider, and the launcher would see nothing they did. Args: ``settings`` with an
    out-of-process ``executor``. Returns None. Raises ``CONFIG_STORE_NOT_SHARED`` (figures:
    store (``cas``, ``records`` or ``telemetry``), variable, executor) for ``memory://``
    stores and an in-memory SQLite record store (telemetry rows flushed by the steps would
    be lost without a word: `wf_pipeline.telemetry.store.per_process_url`).
    """
    stores = (
        ("cas", "CAS", "WF_CAS_URL", url_scheme(settings.cas_url) == CAS_MEMORY_SCHEME),
        ("records", "record", "WF_RECORDS_URL", _records_in_memory(settings.records_url)),
        ("telemetry", "telemetry", "WF_TELEMETRY_URL", per_process_url(settings.telemetry_url)),
    )
    for store, label, variable, in_memory in stores:
        if in_memory:
            raise ConfigError(
                CONFIG_STORE_NOT_SHARED,
                f"the {label} store ({variable}) lives in this process's memory, which the steps of the "
                f"{settings.executor} executor cannot reach; use a file or server store, "
                "or WF_EXECUTOR=in_process",
                store=store,
                variable=variable,
                executor=settings.executor,
            )


def runtime_run_config(settings: Settings) -> dict[str, Any]:
    """The run config that opens the steps' runtime from ``settings``: the resource's config fields.

    Holds `Settings.launch_values` only, so no secret: a provider key stays in the
    environment, named by the provider's ``api_key_env`` option, and a URL that embeds a
    password, and the CAS storage options when set, are Dagster's ``{env: VARIABLE}``, read by
    each step from its own environment.
    """
    values = settings.launch_values()
    for name, variable in ENVIRONMENT_VARIABLES.items():
        if values[name] is None:
            values[name] = {"env": variable}
    return {"resources": {RUNTIME_KEY: {"config": values}}}


def _read_executor_config(path: Path) -> dict[str, Any]:
    """The ``execution: config:`` mapping of a run config YAML file.

    The same file serves ``dagster-celery worker start -y``, so Celery workers and the
    runs that feed them agree on the broker.
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            CONFIG_BAD_EXECUTOR_CONFIG, f"cannot read the executor config {path}", path=str(path)
        ) from exc
    execution = loaded.get("execution") if isinstance(loaded, dict) else None
    config = execution.get("config") if isinstance(execution, dict) else None
    if not isinstance(loaded, dict) or set(loaded) != {"execution"} or not isinstance(config, dict):
        raise ConfigError(
            CONFIG_BAD_EXECUTOR_CONFIG,
            f"the executor config {path} must hold exactly an execution: config: mapping",
            path=str(path),
        )
    return config


def _offending_entries(error: EvaluationError) -> list[str]:
    # The path to the bad value, plus the entry names an unknown or missing entry error holds.
    names = getattr(error.error_data, "field_names", None) or [getattr(error.error_data, "field_name", None)]
    levels = list(error.stack.levels)
    return [":".join([*levels, name]) for name in names if name] or [":".join(levels) or "(root)"]


def _records_in_memory(url: str) -> bool:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == RECORDS_MEMORY_SCHEME:
        return True
    # ``sqlite://`` (no file) is one process's database too; other URLs are judged when opened.
    return scheme == "sqlite" and is_memory_sqlite(parse_url(url))


def load_profiles(settings: Settings, workspace_dir: Path, *, warn: bool = True) -> ProfileCatalog:
    """The profile catalog of ``settings`` as seen from ``workspace_dir`` (workspace, user, built-in layers).

    The built-in workflows are registered first (profiles name their gate types). Opening
    the CAS writes nothing; it only serves prompt_refs given as artifact ids (sealed ones
    through the keyring, `wf_pipeline.crypto.open.artifact_reader`). Raises the
    profile loader's ``PROFILE_*`` errors. ``warn``: log each bad file (see `load_catalog`).
    """
    load_builtin_workflows()
    return load_catalog(
        default_layers(settings, workspace_dir), artifact_reader=artifact_reader(settings), warn=warn
    )


def reconstruct_profile_job(
    workflow_id: str,
    workspace_dir: str,
    executor: str,
    settings_values: Mapping[str, Any],
    profile_artifact_id: str | None = None,
) -> JobDefinition:
    """The workflow's job as every process of an out-of-process run rebuilds it.

    ``settings_values`` are the launcher's `Settings.launch_values` (they name the profile
    layers); each step opens its runtime from the run's resource config.
    ``profile_artifact_id``, for the run of a resumed thread, names its pinned profile
    snapshot: the job is built from that profile (read from the CAS through the keyring),
    not from the workflow's file. Raises the loader's ``PROFILE_*`` errors,
    ``PROFILE_SNAPSHOT_INVALID`` and ``CAS_*`` for a snapshot that cannot be read back.
    """
    settings = Settings.from_values(settings_values)
    catalog = load_profiles(settings, Path(workspace_dir))
    if profile_artifact_id is not None:
        data = artifact_reader(settings)(
            profile_artifact_id, artifact_class=class_of_link(SNAPSHOT_ROLE, None)
        )
        pinned = load_profile_snapshot(data, profile_artifact_id)
        catalog = replace(catalog, profiles={**catalog.profiles, workflow_id: pinned})
    job = resolve_job(build_definitions(catalog), workflow_id)
    return job.with_executor_def(executor_definition(executor))
