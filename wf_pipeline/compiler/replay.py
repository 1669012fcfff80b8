"""Replays in Dagster: one replay asset and job per workflow, with the ``replay_matches`` check.

The replay asset ``[workflow_id, "replay"]`` is partitioned like the workflow's turn
assets (one partition per target directory). Materializing a partition replays the
target's latest thread from its recorded answers in a scratch namespace and compares it
with its records, digest by digest (`wf_pipeline.runtime.replay`): nothing live is
written. The partition's ``replay_matches`` check passes when every digest is equal;
its metadata carries the thread id, the turns' digests and each divergence (turn,
artifact class, expected and actual digests, first differing input), never payload.

The job ``<workflow_id>_replay_job`` selects the asset, so a backfill of it from the UI
is like any backfill: one run per batch of partitions (`BackfillPolicy.single_run`).
Replays of different targets do not wait for one another (each reads its children as
recorded), so the batch needs no level order; it runs deepest first all the same.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    MetadataValue,
    Output,
    define_asset_job,
    multi_asset,
)
from dagster._utils.warnings import disable_dagster_warnings

from wf_pipeline.compiler.assets import targets_partitions, turn_asset_key
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import resolve_target
from wf_pipeline.runtime.replay import ThreadReplay, replay_targets
from wf_pipeline.runtime.threads import final_output_type
from wf_pipeline.security.sinks import scrub_value

REPLAY_CHECK = "replay_matches"
REPLAY_OUTPUT = "replay"


def replay_asset_key(workflow_id: str) -> AssetKey:
    """The replay asset of a workflow: ``[workflow_id, "replay"]``."""
    return AssetKey([workflow_id, REPLAY_OUTPUT])


def replay_job_name(workflow_id: str) -> str:
    """The name of a workflow's replay job: ``<workflow_id>_replay_job``."""
    return f"{workflow_id}_replay_job"


def replay_asset(loaded: LoadedProfile) -> AssetsDefinition:
    """The replay asset of ``loaded`` with its per-partition ``replay_matches`` check.

    Args:
        loaded: the profile.

    Returns:
        A partitioned `AssetsDefinition` downstream of the final turn's asset (lineage
        only: a replay reads the records, not the asset). Its code version is the
        profile's. Building it raises nothing.
    """
    workflow_id = loaded.workflow_id
    key = replay_asset_key(workflow_id)
    partitions = targets_partitions(workflow_id)
    spec = AssetSpec(
        key=key,
        deps=[turn_asset_key(workflow_id, final_output_type(loaded))],
        group_name=f"{workflow_id}_replay",
        code_version=loaded.code_version,
        description=(
            f"Replay of {workflow_id} threads from their recorded answers, verified digest by digest "
            "(prompt render, context, response, output, gate); writes nothing live"
        ),
        kinds={"python"},
        skippable=True,
    )
    # Partitioned checks are a Dagster preview feature; its warning is Dagster's to scope.
    with disable_dagster_warnings():
        check = AssetCheckSpec(
            name=REPLAY_CHECK,
            asset=key,
            description="every digest of the replay equals the recorded one",
            partitions_def=partitions,
        )

    @multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        check_specs=[check],
        required_resource_keys={RUNTIME_KEY},
        backfill_policy=BackfillPolicy.single_run(),
    )
    def _compute(context: AssetExecutionContext) -> Iterator[Any]:
        env = context.resources.wf_runtime
        targets = [resolve_target(env.records, partition) for partition in context.partition_keys]
        replays = replay_targets(env, loaded, targets)
        for partition, replayed in replays.items():
            if replayed is not None:
                yield AssetMaterialization(asset_key=key, partition=partition, metadata=_metadata(replayed))
            yield _evaluation(key, partition, replayed)
        for output_name in context.assets_def.check_specs_by_output_name:
            # The check's output; the verdicts are the evaluations above.
            yield Output(None, output_name=output_name)

    return _compute


def replay_job(loaded: LoadedProfile):
    """The job that materializes a workflow's replay asset (and so runs its checks).

    Returns:
        An unresolved asset job tagged ``wf/workflow_id`` and ``wf/replay``. Raises nothing.
    """
    workflow_id = loaded.workflow_id
    return define_asset_job(
        name=replay_job_name(workflow_id),
        selection=AssetSelection.assets(replay_asset_key(workflow_id)),
        description=f"Replay {workflow_id} threads from their recorded answers and verify every digest",
        tags={"wf/workflow_id": workflow_id, "wf/replay": "true"},
    )


def _evaluation(key: AssetKey, partition: str, replayed: ThreadReplay | None) -> AssetCheckEvaluation:
    if replayed is None:
        return AssetCheckEvaluation(
            asset_key=key,
            check_name=REPLAY_CHECK,
            passed=False,
            partition=partition,
            severity=AssetCheckSeverity.ERROR,
            description="no recorded thread for this target: nothing to replay",
        )
    passed = replayed.matched
    return AssetCheckEvaluation(
        asset_key=key,
        check_name=REPLAY_CHECK,
        passed=passed,
        partition=partition,
        severity=AssetCheckSeverity.ERROR,
        description=None
        if passed
        else (replayed.unreplayable or f"{len(replayed.divergences)} divergences from the records"),
        metadata=_metadata(replayed),
    )


def _metadata(replayed: ThreadReplay) -> dict[str, Any]:
    """Ids and digests only (every string through `scrub_value`, as every sink)."""
    return scrub_value(
        {
            "thread_id": replayed.thread_id,
            "status": replayed.status,
            "matched": replayed.matched,
            "divergences": len(replayed.divergences),
            "provider_calls": replayed.provider_calls,
            "digests": MetadataValue.json(replayed.digests()),
            "divergence_list": MetadataValue.json([d.to_json() for d in replayed.divergences]),
            **({"error_code": replayed.error_code} if replayed.error_code else {}),
            **({"unreplayable": replayed.unreplayable} if replayed.unreplayable else {}),
        }
    )
