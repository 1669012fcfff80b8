"""Profile -> Dagster assets: one asset per turn output, one blocking check per gate."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    DataVersion,
    DynamicPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from wf_pipeline.compiler.resources import IO_MANAGER_KEY, RUNTIME_KEY
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import CONTEXT_REF, TurnOutput, open_thread, resolve_target, run_turn

THREAD_TAG = "wf/thread_id"


def targets_partitions(workflow_id: str) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=f"{workflow_id}_targets")


def turn_asset_key(workflow_id: str, output_type: str) -> AssetKey:
    return AssetKey([workflow_id, output_type])


def turn_assets(loaded: LoadedProfile) -> list[AssetsDefinition]:
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

    @asset(
        key=key,
        ins={ref: AssetIn(key=turn_asset_key(profile.workflow_id, ref)) for ref in upstream_refs},
        partitions_def=partitions,
        check_specs=check_specs,
        io_manager_key=IO_MANAGER_KEY,
        required_resource_keys={RUNTIME_KEY},
        group_name=profile.workflow_id,
        code_version=loaded.turn_code_version(turn.turn_id),
        description=f"{turn.title} (turn {turn.seq} of {profile.workflow_id} {profile.version})",
        kinds={"python"},
    )
    def _compute(context: AssetExecutionContext, **upstream: TurnOutput) -> Iterator[Any]:
        env = context.resources.wf_runtime
        target = resolve_target(env.records, context.partition_key)
        thread_ids = {out.thread_id for out in upstream.values()}
        thread_id = thread_ids.pop() if thread_ids else context.run.tags.get(THREAD_TAG)
        thread = open_thread(env, loaded, target, thread_id)
        result = run_turn(env, loaded, thread, target, turn.turn_id)
        if result.artifact_id is None:
            raise Failure(
                description=f"{result.error_code}: turn {turn.turn_id} of thread {result.thread_id} failed",
                metadata=_metadata(result, turn.seq),
            )
        yield Output(
            result, data_version=DataVersion(result.artifact_id), metadata=_metadata(result, turn.seq)
        )
        if gate is not None:
            yield AssetCheckResult(
                check_name=gate.gate_id,
                passed=result.gate_passed,
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "thread_id": result.thread_id,
                    "gate_type": gate.gate_type,
                    "reasons": MetadataValue.json(list(result.gate_reasons)),
                    "output_artifact_id": result.artifact_id,
                },
            )

    return _compute


def _metadata(result: TurnOutput, seq: int) -> dict[str, Any]:
    """Ids and digests only: never prompt text, context payload or output."""
    return {
        "artifact_id": result.artifact_id or "",
        "bytes": result.artifact_size,
        "thread_id": result.thread_id,
        "turn_seq": seq,
        "attempt": result.attempt,
        "input_artifact_ids": MetadataValue.json(list(result.input_artifact_ids)),
        "reused": result.reused,
        "provider_calls": result.provider_calls,
        **({"error_code": result.error_code} if result.error_code else {}),
    }
