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
from wf_pipeline.metadata.canonical import parse_json
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


def skipped_by_branch(record: TurnRecord | None) -> bool:
    """Whether ``record`` is a turn its branch skipped (status ``skipped`` with a false decision)."""
    return (
        record is not None
        and record.status == "skipped"
        and record.branch is not None
        and record.branch.get("result") is False
    )


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
        The committed turn record.

    Raises:
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
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
