"""Profile -> Dagster assets: one asset per turn output, one blocking check per gate.

A turn's output is in the CAS and its records before the step ends (the runtime writes
both), so a step hands nothing to Dagster but metadata: ids, digests and verdicts. A
downstream turn reads its inputs from the thread's records; the asset dependencies give
Dagster the lineage and the staleness of the graph.

Status is per partition (one partition per target directory):

- A partition whose turn failed or was skipped is never a materialization. Dagster
  materializes a step's output for every partition of the step's range, so a step whose
  targets all completed yields its output, and a step where some did not reports each
  completed target as its own `AssetMaterialization` instead, leaves its (skippable)
  output out, and carries those targets through the later turns itself (Dagster skips the
  later steps, whose only input is the missing output).
- Gate verdicts are partition-aware asset checks (`AssetCheckSpec(partitions_def=...)`,
  a Dagster preview feature): one `AssetCheckEvaluation` per target, passed or failed,
  with the gate's reasons or the turn's error code.
- A run in which a thread failed fails: after every other target is recorded, the step
  tags the run ``wf/threads_failed=<count>`` and raises `Failure` with
  ``RUN_THREADS_FAILED`` naming the failed targets and their codes.
  Dagster then lists the failed targets' partitions as failed (planned in a failed run,
  never materialized). A directory that waits for its children (``RUN_CHILDREN_PENDING``)
  is not a failure: it stays unmaterialized in a successful run.
- A partition whose turn its branch did not take (``when:`` false, recorded ``skipped``
  with the decision: `wf_pipeline.runtime.branches`) is done, not missing: the step
  materializes it like a completed one, with metadata ``wf/branch: not_taken``,
  ``wf/decision`` (the recorded decision's digest) and no artifact (``artifact_id`` empty,
  0 bytes; a single partition's data version is ``branch-not-taken:<decision digest>``), so
  the later turns of the same run go on. Its gate did not run: the check reports it passed
  (so it blocks nothing) with ``outcome: not run (branch not taken)``. A partition whose
  branch was taken carries ``wf/branch: taken`` and the decision's digest too.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    DataVersion,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    multi_asset,
)
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG
from dagster._utils.warnings import disable_dagster_warnings

from wf_pipeline.compiler.launch.event_log import dynamic_partitions_snapshot
from wf_pipeline.compiler.resources import RUNTIME_KEY
from wf_pipeline.errors import RUN_THREADS_FAILED, RunError, WfError
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.runtime import CONTEXT_REF, Target, TurnOutput, resolve_target, run_turn_batch
from wf_pipeline.runtime.failure import recorded_error_text
from wf_pipeline.security.sinks import scrub, scrub_value

THREAD_TAG = "wf/thread_id"
# Set on a run whose threads failed (value: how many); the run fails, and the UI's run list shows it.
THREADS_FAILED_TAG = "wf/threads_failed"


def targets_partitions(workflow_id: str) -> DynamicPartitionsDefinition:
    """The dynamic partitions definition of a workflow's targets, named ``<workflow_id>_targets``.

    Args:
        workflow_id: the profile's workflow id.

    Returns:
        A `DynamicPartitionsDefinition`; its keys are target keys, one per directory.
    """
    return DynamicPartitionsDefinition(name=f"{workflow_id}_targets")


def job_name(workflow_id: str) -> str:
    """The name of a workflow's asset job: ``<workflow_id>_job``."""
    return f"{workflow_id}_job"


def is_workflow_run(run: Any, workflow_id: str) -> bool:
    """Whether the Dagster run ``run`` (a `DagsterRun`) ran assets of ``workflow_id``.

    Either the workflow's own job (`job_name`), or a launch from the asset graph, which runs
    as Dagster's implicit asset job with an asset selection of the workflow's keys
    (`turn_asset_key`: ``[workflow_id, output_type]``). Raises nothing.
    """
    return run.job_name == job_name(workflow_id) or any(
        key.path[0] == workflow_id for key in run.asset_selection or ()
    )


def turn_asset_key(workflow_id: str, output_type: str) -> AssetKey:
    """The asset key of one turn's output: ``[workflow_id, output_type]``."""
    return AssetKey([workflow_id, output_type])


def turn_assets(loaded: LoadedProfile) -> list[AssetsDefinition]:
    """One partitioned asset per turn of the profile, in seq order, each with its gate's check.

    Args:
        loaded: the loaded profile.

    Returns:
        The `AssetsDefinition` list, one per turn. An asset's code version is the turn's code
        version, and its check (one verdict per partition) blocks downstream turns when the
        profile's failure policy stops on a failing gate. A step in which a thread failed
        raises Dagster's `Failure` with ``RUN_THREADS_FAILED`` and the failed targets' codes
        in its description, after recording every other target (see the module's
        docstring); building the assets raises nothing.
    """
    partitions = targets_partitions(loaded.profile.workflow_id)
    return [_turn_asset(loaded, turn, partitions) for turn in loaded.profile.ordered_turns()]


def _turn_asset(
    loaded: LoadedProfile, turn: Any, partitions: DynamicPartitionsDefinition
) -> AssetsDefinition:
    profile = loaded.profile
    key = turn_asset_key(profile.workflow_id, turn.output_type)
    upstream_refs = [ref for ref in turn.input_refs if ref != CONTEXT_REF]
    check_specs = [_check_spec(loaded, turn, partitions)] if turn.gate_id else []

    spec = AssetSpec(
        key=key,
        deps=[turn_asset_key(profile.workflow_id, ref) for ref in upstream_refs],
        group_name=profile.workflow_id,
        code_version=loaded.turn_code_version(turn.turn_id),
        description=f"{turn.title} (turn {turn.seq} of {profile.workflow_id} {profile.version})",
        kinds={"python"},
        # Left out when some targets of the step did not complete (they are no materialization).
        skippable=True,
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
        try:
            yield from _run_step(context, loaded, turn, partitions)
        except WfError as exc:
            # Dagster writes a step's error, message and chained causes, into its event log
            # and compute log: it gets "CODE: message" as a record keeps it (scrubbed, or a
            # digest under a preset that hashes free text) and no chain instead.
            text = recorded_error_text(exc.message, digest_only=loaded.redaction.hash_free_text)
            raise Failure(description=f"{exc.code}: {text}", metadata={"error_code": exc.code}) from None

    return _compute


def _run_step(
    context: AssetExecutionContext, loaded: LoadedProfile, turn: Any, partitions: Any
) -> Iterator[Any]:
    """The body of one turn's step: run the batch of its partitions, report each target."""
    env = context.resources.wf_runtime
    keys = context.partition_keys
    targets = [resolve_target(env.records, key) for key in keys]
    thread_id = context.run.tags.get(THREAD_TAG)
    results = run_turn_batch(
        env, loaded, turn.turn_id, targets, thread_id=thread_id, run_id=context.run.run_id
    )
    check_outputs = {spec.key: name for name, spec in context.assets_def.check_specs_by_output_name.items()}
    if all(_done(r) for r in results.values()):
        # Every target has its output: the step's output materializes the whole range.
        with dynamic_partitions_snapshot(context.instance, partitions.name):
            for partition, result in results.items():
                context.add_asset_metadata(_metadata(result, turn.seq), partition_key=partition)
        # One step, one data version: a single target reports its artifact digest; a batch
        # carries each target's artifact id in that partition's metadata instead.
        data_version = DataVersion(_data_version(results[keys[0]])) if len(keys) == 1 else None
        yield MaterializeResult(data_version=data_version, metadata=_batch_summary(results))
        yield from _gate_evaluations(loaded, turn, results, check_outputs)
        return
    yield from _carry_completed_targets(context, loaded, turn, targets, results, thread_id, check_outputs)


def _check_spec(loaded: LoadedProfile, turn: Any, partitions: DynamicPartitionsDefinition) -> AssetCheckSpec:
    """The gate's check, partitioned like its asset so that each target has its own verdict."""
    profile = loaded.profile
    gate = profile.gate(turn.gate_id)
    # Partitioned checks are a Dagster preview feature; its warning is Dagster's to scope.
    with disable_dagster_warnings():
        return AssetCheckSpec(
            name=gate.gate_id,
            asset=turn_asset_key(profile.workflow_id, turn.output_type),
            blocking=profile.failure_policy.stop_on_gate_fail,
            description=f"{gate.gate_type} gate of {turn.turn_id}",
            partitions_def=partitions,
        )


def _carry_completed_targets(
    context: AssetExecutionContext,
    loaded: LoadedProfile,
    turn: Any,
    targets: Sequence[Target],
    results: Mapping[str, TurnOutput],
    thread_id: str | None,
    check_outputs: Mapping[Any, str],
) -> Iterator[Any]:
    """A step where some targets did not complete: materialize the others one by one, run their
    later turns here, then fail the run if any thread failed.

    Dagster would skip every later step (their input, this step's output, is missing), so the
    completed targets go through the later turns of the run's selection in this step, each
    turn reported per partition like this one. Raises `Failure` (``RUN_THREADS_FAILED``)
    once everything is recorded when a thread failed; targets that only wait for their
    children are no failure.
    """
    env = context.resources.wf_runtime
    failed: dict[str, TurnOutput] = {}
    # A run of the whole job has an empty selection: every asset.
    current, chain = dict(results), _carried_turns(loaded, turn, context.run.asset_selection or None)
    for index, step_turn in enumerate(chain):
        if index:
            live = [t for t in targets if current.get(t.key) is not None and _done(current[t.key])]
            if not live:
                break
            current = run_turn_batch(
                env, loaded, step_turn.turn_id, live, thread_id=thread_id, run_id=context.run.run_id
            )
        yield from _materializations(loaded, step_turn, current)
        yield from _gate_evaluations(loaded, step_turn, current, check_outputs if index == 0 else {})
        failed.update({key: r for key, r in current.items() if r.status == "failed"})
    if failed:
        context.instance.add_run_tags(context.run.run_id, {THREADS_FAILED_TAG: str(len(failed))})
        error = RunError(
            RUN_THREADS_FAILED,
            f"{len(failed)} of {len(targets)} targets failed: "
            + ", ".join(f"{key} ({r.error_code})" for key, r in failed.items()),
        )
        raise Failure(
            description=scrub(str(error)),
            metadata={
                "failed": MetadataValue.json(
                    {
                        key: {"thread_id": r.thread_id, "turn_id": r.turn_id, "error_code": r.error_code}
                        for key, r in failed.items()
                    }
                )
            },
        )


def _carried_turns(loaded: LoadedProfile, turn: Any, selection: Any) -> list[Any]:
    """``turn`` and the later turns that depend on it, transitively, within the run's selection.

    A later turn is carried only when every producer of its inputs either ran before this
    step (upstream of ``turn``) or is carried too: a turn that also waits for another step
    is left to that step's order.
    """
    profile = loaded.profile
    producers = {t.output_type: t.turn_id for t in profile.ordered_turns()}

    def inputs_of(t: Any) -> set[str]:
        return {producers[ref] for ref in t.input_refs if ref != CONTEXT_REF}

    upstream: set[str] = set()
    frontier = inputs_of(turn)
    while frontier:
        upstream |= frontier
        frontier = set().union(*(inputs_of(profile.turn(t)) for t in frontier)) - upstream
    chain, carried = [turn], {turn.turn_id}
    for later in profile.ordered_turns():
        if later.seq <= turn.seq or (
            selection is not None and turn_asset_key(profile.workflow_id, later.output_type) not in selection
        ):
            continue
        needs = inputs_of(later)
        if needs & carried and needs <= carried | upstream:
            chain.append(later)
            carried.add(later.turn_id)
    return chain


def _materializations(loaded: LoadedProfile, turn: Any, results: Mapping[str, TurnOutput]) -> Iterator[Any]:
    """One materialization per completed target, with its artifact digest as data version."""
    key = turn_asset_key(loaded.profile.workflow_id, turn.output_type)
    code_version = loaded.turn_code_version(turn.turn_id)
    for partition, result in results.items():
        if (result.status == "completed" and result.artifact_id) or result.not_taken:
            yield AssetMaterialization(
                asset_key=key,
                partition=partition,
                metadata=_metadata(result, turn.seq),
                tags={CODE_VERSION_TAG: code_version, DATA_VERSION_TAG: _data_version(result)},
            )


def _done(result: TurnOutput) -> bool:
    """Whether a partition's turn is done for this run: completed, or skipped by its branch."""
    return result.status == "completed" or result.not_taken


def _data_version(result: TurnOutput) -> str:
    """The output's artifact id; for a turn its branch skipped, the decision it was skipped by."""
    if result.not_taken:
        return f"branch-not-taken:{result.decision_digest}"
    return result.artifact_id or ""


def _gate_evaluations(
    loaded: LoadedProfile, turn: Any, results: Mapping[str, TurnOutput], check_outputs: Mapping[Any, str]
) -> Iterator[Any]:
    """One check evaluation per target whose gate ran or whose turn failed, then the check's output.

    A failing gate that stops the thread is an ERROR; one recorded under ``mode: continue``
    a WARN. A turn that failed before its gate (a provider error, a budget) fails the check
    with the turn's code, so the failure shows on that partition too. A skipped target
    (waiting for its children, or failed earlier) gets no evaluation.
    """
    if not turn.gate_id:
        return
    profile = loaded.profile
    gate = profile.gate(turn.gate_id)
    asset_key = turn_asset_key(profile.workflow_id, turn.output_type)
    for partition, result in results.items():
        if result.not_taken:
            # The gate did not run; passed, so that it blocks nothing downstream.
            yield AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=gate.gate_id,
                passed=True,
                partition=partition,
                blocking=profile.failure_policy.stop_on_gate_fail,
                severity=AssetCheckSeverity.WARN,
                description=f"gate {gate.gate_id} not run: the branch of turn {turn.turn_id} was not taken",
                metadata={
                    "gate_type": gate.gate_type,
                    "thread_id": result.thread_id,
                    "outcome": "not run (branch not taken)",
                    "wf/branch": "not_taken",
                    "wf/decision": result.decision_digest or "",
                },
            )
            continue
        if result.status == "skipped":
            continue
        evaluated = result.gate_outcome is not None
        passed = evaluated and result.gate_passed
        stops = result.status == "failed"
        yield AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=gate.gate_id,
            passed=passed,
            partition=partition,
            blocking=profile.failure_policy.stop_on_gate_fail,
            severity=AssetCheckSeverity.ERROR if stops or not evaluated else AssetCheckSeverity.WARN,
            description=None
            if passed
            else scrub(
                f"gate {gate.gate_id} failed: {', '.join(result.gate_reasons)}"
                if evaluated
                else f"{result.error_code}: turn {turn.turn_id} failed before its gate"
            ),
            metadata={
                "gate_type": gate.gate_type,
                "rules_digest": loaded.gate_rules_digests[gate.gate_id],
                "thread_id": result.thread_id,
                "outcome": result.gate_outcome or "not evaluated",
                "reasons": MetadataValue.json(scrub_value(list(result.gate_reasons))),
                # Rule id, code, pointer and hint per reason (`wf_pipeline.gates.findings`).
                "findings": MetadataValue.json(scrub_value([dict(f) for f in result.gate_findings])),
                **({"error_code": result.error_code} if result.error_code else {}),
            },
        )
    for check_key, output_name in check_outputs.items():
        if check_key.name == gate.gate_id:
            # The check's output: later steps wait on it; the verdicts are the evaluations above.
            yield Output(None, output_name=output_name)


def _batch_summary(results: Mapping[str, TurnOutput]) -> dict[str, Any]:
    statuses = [r.status for r in results.values()]
    return {
        "targets": len(results),
        "completed": statuses.count("completed"),
        "failed": statuses.count("failed"),
        "skipped": statuses.count("skipped"),
        "branch_not_taken": sum(1 for r in results.values() if r.not_taken),
        "provider_calls": sum(r.provider_calls for r in results.values()),
    }


def _metadata(result: TurnOutput, seq: int) -> dict[str, Any]:
    """Ids and digests only: never prompt text, context payload or output (and, as every
    sink, its strings pass `scrub`)."""
    return scrub_value(
        {
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
            **(
                {"wf/branch": result.branch, "wf/decision": result.decision_digest or ""}
                if result.branch
                else {}
            ),
        }
    )
