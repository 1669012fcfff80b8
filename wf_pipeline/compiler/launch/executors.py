"""Where the steps of a run execute: the Dagster executor for ``WF_EXECUTOR`` and its run config.

Out-of-process steps (one process per step, one Kubernetes Job per step, one Celery task
per step) rebuild the workflow's job with `reconstruct_profile_job` and open their
runtime from the run's resource config (`runtime_run_config`): the settings reach them
through Dagster's own configuration, never through the launching process's environment.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, JobDefinition, multiprocess_executor

from wf_pipeline.cas import open_cas
from wf_pipeline.compiler.definitions import build_definitions, resolve_job
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.errors import (
    CONFIG_BAD_EXECUTOR,
    CONFIG_BAD_EXECUTOR_CONFIG,
    CONFIG_EXECUTOR_UNAVAILABLE,
    ConfigError,
)
from wf_pipeline.profiles import ProfileCatalog, default_layers, load_catalog
from wf_pipeline.settings import SECRET_URL_VARIABLES, Settings
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


def runtime_run_config(settings: Settings) -> dict[str, Any]:
    """The run config that opens the steps' runtime from ``settings``: the resource's config fields.

    Holds `Settings.launch_values` only, so no secret: a provider key stays in the
    environment, named by the provider's ``api_key_env`` option, and a URL that embeds a
    password is Dagster's ``{env: VARIABLE}``, read by each step from its own environment.
    """
    values = settings.launch_values()
    for name, variable in SECRET_URL_VARIABLES.items():
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


def load_profiles(settings: Settings, workspace_dir: Path) -> ProfileCatalog:
    """The profile catalog of ``settings`` as seen from ``workspace_dir`` (workspace, user, built-in layers).

    The built-in workflows are registered first (profiles name their gate types). Opening
    the CAS writes nothing; it only serves prompt_refs given as artifact ids. Raises the
    profile loader's ``PROFILE_*`` errors.
    """
    load_builtin_workflows()
    return load_catalog(
        default_layers(settings, workspace_dir), artifact_reader=open_cas(settings.cas_url).get
    )


def reconstruct_profile_job(
    workflow_id: str, workspace_dir: str, executor: str, settings_values: Mapping[str, Any]
) -> JobDefinition:
    """The workflow's job as every process of an out-of-process run rebuilds it.

    ``settings_values`` are the launcher's `Settings.launch_values` (they name the profile
    layers); each step opens its runtime from the run's resource config.
    """
    settings = Settings.from_values(settings_values)
    job = resolve_job(build_definitions(load_profiles(settings, Path(workspace_dir))), workflow_id)
    return job.with_executor_def(executor_definition(executor))
