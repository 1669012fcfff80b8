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
  with the gate's reasons or the turn's error code. A ``warn`` verdict (reasons that do
  not block, `wf_pipeline.gates.registry.verdict_outcome`) is a failed evaluation of
  severity WARN, which Dagster never blocks on; so is a ``fail`` under ``mode: continue``.
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
from wf_pipeline.profiles import LoadedProfile, turn_segments
from wf_pipeline.runtime import CONTEXT_REF, Target, TurnOutput, resolve_target, run_segment_batch
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

    A parallel segment (`wf_pipeline.profiles.turn_segments`: turns that do not read each
    other's outputs) is one step: a ``@multi_asset`` with one sibling asset per turn
    (``can_subset``), so the asset graph shows the fork and the join, and its turns run
    concurrently inside each thread (`wf_pipeline.runtime.batch.run_segment_batch`). A
    turn alone in its segment is a one-asset step, as before.

    Args:
        loaded: the loaded profile.

    Returns:
        The `AssetsDefinition` list, one per segment. An asset's code version is the turn's
        code version, and its check (one verdict per partition) blocks downstream turns when
        the profile's failure policy stops on a failing gate. A step in which a thread
        failed raises Dagster's `Failure` with ``RUN_THREADS_FAILED`` and the failed
        targets' codes in its description, after recording every other target (see the
        module's docstring); building the assets raises nothing.
    """
    partitions = targets_partitions(loaded.profile.workflow_id)
    return [
        _segment_asset(loaded, index, segment, partitions)
        for index, segment in enumerate(turn_segments(loaded.profile))
    ]


def segment_op_name(workflow_id: str, index: int) -> str:
    """The op name of a parallel segment's step: ``<workflow_id>__segment_<index>``."""
    return f"{workflow_id}__segment_{index}"


def _turn_spec(loaded: LoadedProfile, turn: Any) -> AssetSpec:
    profile = loaded.profile
    upstream_refs = [ref for ref in turn.input_refs if ref != CONTEXT_REF]
    return AssetSpec(
        key=turn_asset_key(profile.workflow_id, turn.output_type),
        deps=[turn_asset_key(profile.workflow_id, ref) for ref in upstream_refs],
        group_name=profile.workflow_id,
        code_version=loaded.turn_code_version(turn.turn_id),
        description=f"{turn.title} (turn {turn.seq} of {profile.workflow_id} {profile.version})",
        kinds={"python"},
        # Left out when some targets of the step did not complete (they are no materialization).
        skippable=True,
    )


def _segment_asset(
    loaded: LoadedProfile, index: int, segment: Sequence[Any], partitions: DynamicPartitionsDefinition
) -> AssetsDefinition:
    profile = loaded.profile
    parallel = len(segment) > 1
    check_specs = [_check_spec(loaded, turn, partitions) for turn in segment if turn.gate_id]
    keys = {turn_asset_key(profile.workflow_id, turn.output_type): turn for turn in segment}

    # A one-asset step is a one-asset multi_asset too: `@asset` marks its backfill_policy
    # parameter as beta, `@multi_asset` does not. It keeps the name `@asset` would give it.
    @multi_asset(
        name=segment_op_name(profile.workflow_id, index)
        if parallel
        else next(iter(keys)).to_python_identifier(),
        specs=[_turn_spec(loaded, turn) for turn in segment],
        partitions_def=partitions,
        check_specs=check_specs,
        # A selection may hold one sibling of a segment and not the other.
        can_subset=parallel,
        required_resource_keys={RUNTIME_KEY},
        # A backfill batches its targets into one run; bottom-up order is kept by the
        # runtime, which skips a directory whose children have not finished.
        backfill_policy=BackfillPolicy.single_run(),
    )
    def _compute(context: AssetExecutionContext) -> Iterator[Any]:
        selected = [turn for key, turn in keys.items() if key in context.selected_asset_keys]
        try:
            yield from _run_step(context, loaded, selected, partitions)
        except WfError as exc:
            # Dagster writes a step's error, message and chained causes, into its event log
            # and compute log: it gets "CODE: message" as a record keeps it (scrubbed, or a
            # digest under a preset that hashes free text) and no chain instead.
            text = recorded_error_text(exc.message, digest_only=loaded.redaction.hash_free_text)
            raise Failure(description=f"{exc.code}: {text}", metadata={"error_code": exc.code}) from None

    return _compute


def _run_step(
    context: AssetExecutionContext, loaded: LoadedProfile, turns: Sequence[Any], partitions: Any
) -> Iterator[Any]:
    """The body of one segment's step: run its turns for its partitions, report each target."""
    env = context.resources.wf_runtime
    keys = context.partition_keys
    targets = [resolve_target(env.records, key) for key in keys]
    thread_id = context.run.tags.get(THREAD_TAG)
    by_turn = run_segment_batch(
        env, loaded, [t.turn_id for t in turns], targets, thread_id=thread_id, run_id=context.run.run_id
    )
    check_outputs = {spec.key: name for name, spec in context.assets_def.check_specs_by_output_name.items()}
    if all(_done(r) for results in by_turn.values() for r in results.values()):
        # Every target has every output: the step's outputs materialize the whole range.
        for turn in turns:
            results = by_turn[turn.turn_id]
            asset_key = turn_asset_key(loaded.profile.workflow_id, turn.output_type)
            with dynamic_partitions_snapshot(context.instance, partitions.name):
                for partition, result in results.items():
                    context.add_asset_metadata(
                        _metadata(result, turn.seq), asset_key=asset_key, partition_key=partition
                    )
            # One step, one data version: a single target reports its artifact digest; a batch
            # carries each target's artifact id in that partition's metadata instead.
            data_version = DataVersion(_data_version(results[keys[0]])) if len(keys) == 1 else None
            yield MaterializeResult(
                asset_key=asset_key, data_version=data_version, metadata=_batch_summary(results)
            )
            yield from _gate_evaluations(loaded, turn, results, check_outputs)
        return
    yield from _carry_completed_targets(context, loaded, turns, targets, by_turn, thread_id, check_outputs)


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
    turns: Sequence[Any],
    targets: Sequence[Target],
    by_turn: Mapping[str, Mapping[str, TurnOutput]],
    thread_id: str | None,
    check_outputs: Mapping[Any, str],
) -> Iterator[Any]:
    """A step where some targets did not complete: materialize the others one by one, run their
    later turns here, then fail the run if any thread failed.

    Dagster would skip every later step (their input, this step's output, is missing), so the
    completed targets go through the later turns of the run's selection in this step, each
    turn reported per partition like this one, the turns of a later parallel segment
    together. A later turn runs for a target only when every turn it reads completed
    there and its thread did not fail: a failed sibling stops what depends on it, and no
    sibling (siblings ran with it). Raises `Failure`
    (``RUN_THREADS_FAILED``) once everything is recorded when a thread failed; targets
    that only wait for their children are no failure.
    """
    env = context.resources.wf_runtime
    profile = loaded.profile
    failed: dict[str, TurnOutput] = {}
    done: dict[str, Mapping[str, TurnOutput]] = dict(by_turn)
    for turn in turns:
        yield from _materializations(loaded, turn, by_turn[turn.turn_id])
        yield from _gate_evaluations(loaded, turn, by_turn[turn.turn_id], check_outputs)
        failed.update({key: r for key, r in by_turn[turn.turn_id].items() if r.status == "failed"})
    producers = {t.output_type: t.turn_id for t in profile.ordered_turns()}
    # A run of the whole job has an empty selection: every asset.
    for group in _carried_segments(loaded, turns, context.run.asset_selection or None):
        # Targets where every input of the turn completed; turns with the same targets run together.
        runs: dict[tuple[str, ...], list[str]] = {}
        for later in group:
            reads = [producers[ref] for ref in later.input_refs if ref != CONTEXT_REF]
            # A producer of an earlier step completed for every target this step ran; a thread
            # that failed in this step runs nothing more (its failure stands).
            live = tuple(
                t.key
                for t in targets
                if t.key not in failed
                and all(
                    (r := done[producer].get(t.key)) is not None and _done(r)
                    for producer in reads
                    if producer in done
                )
            )
            runs.setdefault(live, []).append(later.turn_id)
        for live, turn_ids in runs.items():
            if not live:
                continue
            chosen = [t for t in targets if t.key in live]
            done.update(
                run_segment_batch(
                    env, loaded, turn_ids, chosen, thread_id=thread_id, run_id=context.run.run_id
                )
            )
        for later in group:
            results = done.get(later.turn_id, {})
            yield from _materializations(loaded, later, results)
            yield from _gate_evaluations(loaded, later, results, {})
            failed.update({key: r for key, r in results.items() if r.status == "failed"})
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


def _carried_segments(loaded: LoadedProfile, turns: Sequence[Any], selection: Any) -> list[list[Any]]:
    """The later turns that depend on ``turns``, transitively, within the run's selection, by segment.

    A later turn is carried only when every producer of its inputs either ran before this
    step (upstream of ``turns``), is one of ``turns``, or is carried too: a turn that also
    waits for another step is left to that step's order. Each list holds the carried turns
    of one later segment (`wf_pipeline.profiles.turn_segments`), in segment order.
    """
    profile = loaded.profile
    producers = {t.output_type: t.turn_id for t in profile.ordered_turns()}

    def inputs_of(t: Any) -> set[str]:
        return {producers[ref] for ref in t.input_refs if ref != CONTEXT_REF}

    upstream: set[str] = set()
    frontier = set().union(*(inputs_of(t) for t in turns))
    while frontier:
        upstream |= frontier
        frontier = set().union(*(inputs_of(profile.turn(t)) for t in frontier)) - upstream
    carried = {t.turn_id for t in turns}
    last_seq = max(t.seq for t in turns)
    groups: list[list[Any]] = []
    for segment in turn_segments(profile):
        group = []
        for later in segment:
            if later.seq <= last_seq or (
                selection is not None
                and turn_asset_key(profile.workflow_id, later.output_type) not in selection
            ):
                continue
            needs = inputs_of(later)
            if needs & carried and needs <= carried | upstream:
                group.append(later)
        carried |= {t.turn_id for t in group}
        if group:
            groups.append(group)
    return groups


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

    A failing gate that stops the thread is an ERROR; a ``warn`` verdict, and a ``fail``
    recorded under ``mode: continue``, a WARN (Dagster blocks on ERROR only). A turn that failed before its gate (a provider error, a budget) fails the check
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
        verdict = "warned" if result.gate_outcome == "warn" else "failed"
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
                f"gate {gate.gate_id} {verdict}: {', '.join(result.gate_reasons)}"
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
        if check_key.asset_key == asset_key and check_key.name == gate.gate_id:
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
