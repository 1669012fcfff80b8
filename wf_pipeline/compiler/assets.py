"""Profile -> Dagster assets: one asset per turn output, one blocking check per gate.

A turn's output is in the CAS and its records before the step ends (the runtime writes
both), so a step hands nothing to Dagster but metadata: ids, digests and verdicts. A
downstream turn reads its inputs from the thread's records; the asset dependencies give
Dagster the lineage and the staleness of the graph.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    DataVersion,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from wf_pipeline.compiler.launch.event_log import dynamic_partitions_snapshot
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import CONTEXT_REF, TurnOutput, resolve_target, run_turn_batch

THREAD_TAG = "wf/thread_id"


def targets_partitions(workflow_id: str) -> DynamicPartitionsDefinition:
    """The dynamic partitions definition of a workflow's targets, named ``<workflow_id>_targets``.

    Args:
        workflow_id: the profile's workflow id.

    Returns:
        A `DynamicPartitionsDefinition`; its keys are target keys, one per directory.
    """
    return DynamicPartitionsDefinition(name=f"{workflow_id}_targets")


def turn_asset_key(workflow_id: str, output_type: str) -> AssetKey:
    """The asset key of one turn's output: ``[workflow_id, output_type]``."""
    return AssetKey([workflow_id, output_type])


def turn_assets(loaded: LoadedProfile) -> list[AssetsDefinition]:
    """One partitioned asset per turn of the profile, in seq order, each with its gate's check.

    Args:
        loaded: the loaded profile.

    Returns:
        The `AssetsDefinition` list, one per turn. An asset's code version is the turn's code
        version, and its check blocks downstream turns when the profile's failure policy
        stops on a failing gate. A step that fails for a single target raises Dagster's
        `Failure` with the turn's ``CODE`` in its description; building the assets raises
        nothing.
    """
    partitions = targets_partitions(loaded.profile.workflow_id)
    return [_turn_asset(loaded, turn, partitions) for turn in loaded.profile.ordered_turns()]


def _turn_asset(
    loaded: LoadedProfile, turn: Any, partitions: DynamicPartitionsDefinition
) -> AssetsDefinition:
    profile = loaded.profile
    key = turn_asset_key(profile.workflow_id, turn.output_type)
    upstream_refs = [ref for ref in turn.input_refs if ref != CONTEXT_REF]
    gate = profile.gate(turn.gate_id) if turn.gate_id else None
    check_specs = (
        [
            AssetCheckSpec(
                name=gate.gate_id,
                asset=key,
                blocking=profile.failure_policy.stop_on_gate_fail,
                description=f"{gate.gate_type} gate of {turn.turn_id}",
            )
        ]
        if gate
        else []
    )

    spec = AssetSpec(
        key=key,
        deps=[turn_asset_key(profile.workflow_id, ref) for ref in upstream_refs],
        group_name=profile.workflow_id,
        code_version=loaded.turn_code_version(turn.turn_id),
        description=f"{turn.title} (turn {turn.seq} of {profile.workflow_id} {profile.version})",
        kinds={"python"},
    )

    # A one-asset multi_asset: `@asset` marks its backfill_policy parameter as beta,
    # `@multi_asset` does not. The op keeps the name `@asset` would give it.
    @multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        check_specs=check_specs,
        required_resource_keys={RUNTIME_KEY},
        # A backfill batches its targets into one run; bottom-up order is kept by the
        # runtime, which skips a directory whose children have not finished.
        backfill_policy=BackfillPolicy.single_run(),
    )
    def _compute(context: AssetExecutionContext) -> Iterator[Any]:
        env = context.resources.wf_runtime
        keys = context.partition_keys
        targets = [resolve_target(env.records, key) for key in keys]
        results = run_turn_batch(
            env, loaded, turn.turn_id, targets, thread_id=context.run.tags.get(THREAD_TAG)
        )
        single = len(keys) == 1
        if single and results[keys[0]].artifact_id is None:
            result = results[keys[0]]
            raise Failure(
                description=f"{result.error_code}: turn {turn.turn_id} of thread {result.thread_id} did not complete",
                metadata=_metadata(result, turn.seq),
            )
        with dynamic_partitions_snapshot(context.instance, partitions.name):
            for key, result in results.items():
                context.add_asset_metadata(_metadata(result, turn.seq), partition_key=key)
        # One step, one data version: a single target reports its artifact digest; a batch
        # carries each target's artifact id in that partition's metadata instead.
        data_version = DataVersion(results[keys[0]].artifact_id) if single else None
        yield MaterializeResult(data_version=data_version, metadata=_batch_summary(results))
        if gate is not None:
            yield _gate_check(gate, results, single)

    return _compute


def _gate_check(gate: Any, results: dict[str, TurnOutput], single: bool) -> AssetCheckResult:
    """The gate verdicts of the step.

    For one target the check is Dagster-blocking (ERROR). In a batch, blocking is enforced
    per thread by the runtime (a failed thread's later turns are skipped), so a failing
    thread is reported as a WARN and never stops the other threads of the step.
    """
    evaluated = {key: r for key, r in results.items() if r.gate_outcome is not None}
    failing = {key: r for key, r in evaluated.items() if not r.gate_passed}
    return AssetCheckResult(
        check_name=gate.gate_id,
        passed=not failing,
        severity=AssetCheckSeverity.ERROR if single else AssetCheckSeverity.WARN,
        metadata={
            "gate_type": gate.gate_type,
            "evaluated": len(evaluated),
            "failed": len(failing),
            "failures": MetadataValue.json(
                {
                    key: {"thread_id": r.thread_id, "reasons": list(r.gate_reasons)}
                    for key, r in failing.items()
                }
            ),
        },
    )


def _batch_summary(results: dict[str, TurnOutput]) -> dict[str, Any]:
    statuses = [r.status for r in results.values()]
    return {
        "targets": len(results),
        "completed": statuses.count("completed"),
        "failed": statuses.count("failed"),
        "skipped": statuses.count("skipped"),
        "provider_calls": sum(r.provider_calls for r in results.values()),
    }


def _metadata(result: TurnOutput, seq: int) -> dict[str, Any]:
    """Ids and digests only: never prompt text, context payload or output."""
    return {
        "artifact_id": result.artifact_id or "",
        "bytes": result.artifact_size,
        "thread_id": result.thread_id,
        "turn_seq": seq,
        "attempt": result.attempt,
        "status": result.status,
        "input_artifact_ids": MetadataValue.json(list(result.input_artifact_ids)),
        "reused": result.reused,
        "provider_calls": result.provider_calls,
        **({"error_code": result.error_code} if result.error_code else {}),
    }
