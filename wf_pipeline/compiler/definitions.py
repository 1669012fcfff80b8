"""Profiles -> Dagster Definitions: assets, blocking checks, partitions, one job per profile."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, JobDefinition, define_asset_job

from wf_pipeline.compiler.assets import job_name, turn_assets
from wf_pipeline.compiler.maintenance import (
    MaintenanceCalls,
    keys_rewrap_job,
    retention_job,
    retention_schedule,
    retention_trigger_sensor,
)
from wf_pipeline.compiler.replay import replay_asset, replay_job
from wf_pipeline.compiler.resources import runtime_resources
from wf_pipeline.compiler.sensors import (
    activation_sensor,
    bottom_up_after_failed_threads_sensor,
    bottom_up_sensor,
)
from wf_pipeline.compiler.telemetry import (
    telemetry_assets,
    telemetry_job,
    telemetry_resources,
    telemetry_schedule,
)
from wf_pipeline.profiles import LoadedProfile, ProfileCatalog
from wf_pipeline.runtime import RuntimeEnv


def profile_job(loaded: LoadedProfile):
    """The asset job that materializes every turn asset of one profile.

    Args:
        loaded: the loaded profile.

    Returns:
        An unresolved asset job (Dagster's `define_asset_job`) selecting the profile's asset
        group, tagged ``wf/workflow_id`` and ``wf/profile_version``. Raises nothing.
    """
    workflow_id = loaded.profile.workflow_id
    return define_asset_job(
        name=job_name(workflow_id),
        selection=AssetSelection.groups(workflow_id),
        description=f"{loaded.profile.title} ({loaded.profile.version}), one thread per target directory",
        tags={"wf/workflow_id": workflow_id, "wf/profile_version": loaded.profile.version},
    )


def build_definitions(
    catalog: ProfileCatalog, env: RuntimeEnv | None = None, maintenance: MaintenanceCalls | None = None
) -> Definitions:
    """One asset group and one job per profile, its replay asset and job, the ``telemetry`` group, job and schedule; with ``maintenance``, ``wf_retention``.

    A profile that declares ``activates:`` gets an activation sensor that starts the
    activated workflows on a tree's root (`wf_pipeline.compiler.sensors.activation_sensor`).

    The maintenance job comes with its daily schedule and early-trigger sensor
    (`wf_pipeline.compiler.maintenance`); ``maintenance`` holds the retention and
    compaction use cases the service layer hands in (the code location does), and the
    key rewrap (then the ``wf_keys_rewrap`` job is defined too).

    With ``env`` the resources use that open runtime (CLI runs); without, each run opens
    the runtime from WF_ settings (the code location the UI and daemon load).
    """
    assets = []
    jobs = []
    sensors = []
    jobs_by_workflow = {}
    for loaded in catalog.all():
        job = profile_job(loaded)
        jobs_by_workflow[loaded.workflow_id] = job
        assets.extend(turn_assets(loaded))
        assets.append(replay_asset(loaded))
        jobs += [job, replay_job(loaded)]
        sensors += [bottom_up_sensor(loaded, job), bottom_up_after_failed_threads_sensor(loaded, job)]
    # Chained workflows: one sensor per upstream profile (the catalog checked the graph at load).
    sensors += [
        activation_sensor(loaded, jobs_by_workflow, env)
        for loaded in catalog.all()
        if loaded.profile.activates
    ]
    assets.extend(telemetry_assets())
    telemetry = telemetry_job()
    jobs.append(telemetry)
    schedules = [telemetry_schedule(telemetry)]
    if maintenance is not None:
        retention = retention_job(maintenance)
        jobs.append(retention)
        schedules.append(retention_schedule(retention))
        sensors.append(retention_trigger_sensor(retention, maintenance))
        if maintenance.rewrap_keys is not None:
            jobs.append(keys_rewrap_job(maintenance.rewrap_keys))
    resources = {**runtime_resources(env), **telemetry_resources(env)}
    return Definitions(assets=assets, jobs=jobs, sensors=sensors, schedules=schedules, resources=resources)


def resolve_job(defs: Definitions, workflow_id: str) -> JobDefinition:
    """The resolved job of ``workflow_id`` in ``defs``.

    Args:
        defs: Definitions from `build_definitions`.
        workflow_id: the profile's workflow id.

    Returns:
        Its `JobDefinition`, with resources bound.

    Raises:
        DagsterInvariantViolationError: no job of that workflow is in ``defs`` (Dagster's own
            error, not a `WfError`: callers resolve only workflows they compiled).
    """
    return defs.resolve_job_def(job_name(workflow_id))
