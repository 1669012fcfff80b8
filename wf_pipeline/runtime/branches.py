"""Branch decisions: a turn's ``when:`` evaluated over its thread's records, and a skip recorded.

Before a conditional turn runs (`wf_pipeline.runtime.turn.run_turn`), its expression
(`wf_pipeline.profiles.expressions`) is evaluated over the latest recorded outputs and gate
verdicts of the turns upstream of it. A false decision is committed as the turn's
``skipped`` record with the decision (``turns.branch``), and no provider is called; a
true decision is recorded on the attempt that runs. A later turn that reads the output of
a turn its branch skipped runs without that input (docs/specs/conditional-branches.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from wf_pipeline.errors import RUN_BRANCH_UNREADABLE, RunError
from wf_pipeline.metadata.canonical import canonical_json, digest, parse_json
from wf_pipeline.metadata.payloads import output_model
from wf_pipeline.metadata.records import (
    ThreadRecord,
    TurnRecord,
    gate_outcome_passed,
    now_ms,
    turn_record_id_for,
)
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.profiles.expressions import GATES_ROOT, Decision, FieldRef, evaluate
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.records import TurnCommit
from wf_pipeline.runtime.environment import RuntimeEnv

# The verdict a turn skipped by its branch carries downstream (``TurnOutput.error_code``):
# not an error raised, so not in the error catalogue.
BRANCH_NOT_TAKEN = "BRANCH_NOT_TAKEN"


def decision_digest(branch: Mapping[str, Any] | None) -> str | None:
    """``sha256:<hex>`` of a recorded decision's canonical JSON (``turns.branch``), or None for no decision."""
    return digest(canonical_json(dict(branch))) if branch is not None else None


def decision_view(branch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A recorded decision as read-side views show it (`wf threads show`).

    Args:
        branch: a turn record's ``branch`` (`Decision.to_json`), or None.

    Returns:
        None for a turn without ``when:``; else ``{"branch": "taken" | "not_taken",
        "expression" (the profile's text), "reads" ({field: number, boolean, enum string,
        null or the sha256 digest of free text}), "result" (bool), "decision_digest"}``.
        Ids, numbers and digests only: the decision holds no payload text.
    """
    if branch is None:
        return None
    result = bool(branch.get("result"))
    return {
        "branch": "taken" if result else "not_taken",
        "expression": branch.get("expression"),
        "reads": dict(branch.get("reads") or {}),
        "result": result,
        "decision_digest": decision_digest(branch),
    }


def skipped_by_branch(record: TurnRecord | None) -> bool:
    """Whether ``record`` is a turn its branch skipped (status ``skipped`` with a false decision)."""
    return (
        record is not None
        and record.status == "skipped"
        and record.branch is not None
        and record.branch.get("result") is False
    )


def skip_within_progress(thread: ThreadRecord, record: TurnRecord | None) -> bool:
    """Whether ``record`` is a branch skip at or before the thread's ``last_turn_seq``.

    Such a skip is part of the thread's progress: the turns that read the skipped turn's
    output treat it as absent, not missing (a skip after ``last_turn_seq`` belongs to a
    restarted thread's past and is decided again).
    """
    return skipped_by_branch(record) and record is not None and record.turn_seq <= thread.last_turn_seq


def decision_already_recorded(
    thread: ThreadRecord, latest: TurnRecord | None, decision: Mapping[str, Any]
) -> bool:
    """Whether ``latest`` is a skip within the thread's progress recorded with this very decision.

    A turn decided again (its inputs' producers ran again) to the same values keeps that
    record: `commit_skip` writes nothing, and no second telemetry row is made.
    """
    return skip_within_progress(thread, latest) and latest is not None and latest.branch == dict(decision)


def standing_skip(
    loaded: LoadedProfile, thread: ThreadRecord, turn_id: str, history: Mapping[str, TurnRecord]
) -> TurnRecord | None:
    """The recorded skip of ``turn_id`` that a run, resume or repair keeps without deciding again.

    A skip stands when it lies within the thread's progress (`skip_within_progress`) and
    its inputs have not changed since: no turn whose output or gate verdict its ``when:``
    reads has an attempt that started at or after the skip was recorded (a repair, or a
    lost input produced again). Otherwise the turn is decided again; a decision equal to
    the recorded one keeps the recorded skip (`commit_skip`).

    Args:
        loaded: the thread's profile.
        thread: the thread as recorded now.
        turn_id: the conditional turn.
        history: turn_id -> latest attempt (`RecordStore.latest_turns`).

    Returns:
        The standing skip record, or None (no skip, past the thread's progress, inputs
        changed, or the turn no longer declares ``when:``). Raises nothing.
    """
    record = history.get(turn_id)
    if record is None or not skip_within_progress(thread, record):
        return None
    branch = loaded.branch(turn_id)
    if branch is None:
        return None
    expression, _ = branch
    producers = {t.output_type: t.turn_id for t in loaded.profile.turns}
    gated = {t.gate_id: t.turn_id for t in loaded.profile.turns if t.gate_id is not None}
    read_turns = {producers[o] for o in expression.output_types} | {gated[g] for g in expression.gate_ids}
    for read_turn in read_turns:
        upstream = history.get(read_turn)
        if upstream is not None and upstream.started_at_ms >= record.started_at_ms:
            return None
    return record


def decide(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    turn_id: str,
    history: Mapping[str, TurnRecord],
) -> Decision | None:
    """Evaluate ``turn_id``'s ``when:`` over the thread's latest outputs and gate verdicts.

    Args:
        env: the runtime (records and CAS read).
        loaded: the thread's profile.
        thread: the thread.
        turn_id: the turn.
        history: turn_id -> latest attempt (`RecordStore.latest_turns`).

    Returns:
        The `Decision`, or None for a turn without ``when:``. A field of an output that is
        not there (its turn was skipped by its branch, or the field is absent) reads as null.

    Raises:
        RunError: ``RUN_BRANCH_UNREADABLE`` (figures: thread_id, turn_id, output_type,
            artifact_id) when an output read does not parse under its payload model.
        CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_DECODE_ERROR``,
            ``CAS_BACKEND_ERROR`` reading an output.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    branch = loaded.branch(turn_id)
    if branch is None:
        return None
    expression, kinds = branch
    producers = {t.output_type: t for t in loaded.profile.turns}
    by_gate = {t.gate_id: t for t in loaded.profile.turns if t.gate_id is not None}
    outputs: dict[str, BaseModel | None] = {}
    gates = None

    def output(output_type: str) -> BaseModel | None:
        if output_type not in outputs:
            outputs[output_type] = _recorded_output(
                env, thread, turn_id, output_type, history.get(producers[output_type].turn_id)
            )
        return outputs[output_type]

    def read(ref: FieldRef) -> Any:
        nonlocal gates
        if ref.root == GATES_ROOT:
            if gates is None:
                gates = env.records.gates_for_thread(thread.thread_id)
            producer = history.get(by_gate[ref.gate_id].turn_id)
            verdict = next(
                (
                    g
                    for g in reversed(gates)
                    if producer is not None
                    and g.turn_id == producer.turn_id
                    and g.attempt == producer.attempt
                ),
                None,
            )
            if verdict is None:
                return None
            return verdict.outcome if ref.path[1] == "outcome" else gate_outcome_passed(verdict.outcome)
        value: Any = output(ref.root)
        for name in ref.path:
            if value is None:
                return None
            value = getattr(value, name, None)
        return value

    return evaluate(expression, kinds, read)


def _recorded_output(
    env: RuntimeEnv, thread: ThreadRecord, turn_id: str, output_type: str, latest: TurnRecord | None
) -> BaseModel | None:
    if latest is None or latest.status != "completed" or latest.output_artifact_id is None:
        return None
    model = output_model(output_type)
    text = env.cas.get_text(latest.output_artifact_id, artifact_class=class_of_link("output", output_type))
    try:
        return model.model_validate(parse_json(text)) if model is not None else None
    except (ValueError, ValidationError):
        raise RunError(
            RUN_BRANCH_UNREADABLE,
            f"turn {turn_id} of thread {thread.thread_id}: its when: reads {output_type} "
            f"{latest.output_artifact_id}, which does not parse under its payload model",
            thread_id=thread.thread_id,
            turn_id=turn_id,
            output_type=output_type,
            artifact_id=latest.output_artifact_id,
        ) from None


def commit_skip(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    turn: Any,
    decision: Decision,
    latest: TurnRecord | None,
) -> TurnRecord:
    """Record ``turn`` as skipped by its branch, with the decision; no provider is called.

    The thread moves on past the turn (``last_turn_seq``) and stays ``running`` (a completed
    thread stays completed): its later turns run as usual.

    Args:
        env: the runtime (records written).
        loaded: the thread's profile.
        thread: the thread as recorded now.
        turn: the turn's spec.
        decision: its false decision.
        latest: the turn's latest attempt, if any (the skip is numbered after it).

    Returns:
        The committed turn record; when ``latest`` is a skip within the thread's progress
        recorded with this very decision (the same values read again), that record, and
        nothing is written.

    Raises:
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    if decision_already_recorded(thread, latest, decision.to_json()):
        return latest  # type: ignore[return-value]
    stamp = now_ms()
    number = (latest.attempt + 1) if latest else 1
    record = TurnRecord(
        turn_record_id=turn_record_id_for(loaded.workflow_id, thread.thread_id, turn.turn_id, number),
        thread_id=thread.thread_id,
        turn_id=turn.turn_id,
        turn_seq=turn.seq,
        attempt=number,
        status="skipped",
        started_at_ms=stamp,
        ended_at_ms=stamp,
        provider_called=False,
        branch=decision.to_json(),
    )
    updated = thread.model_copy(
        update={
            "last_turn_seq": max(thread.last_turn_seq, turn.seq),
            "status": "completed" if thread.status == "completed" else "running",
            "updated_at_ms": stamp,
            "error_code": None,
            "error_text": None,
        }
    )
    env.records.commit_turn(TurnCommit(thread=updated, turn=record))
    return record
