"""The profile's failure policy as the runtime applies it.

Two rules live here and nowhere else:

- whether a gate verdict stops its thread (``failure_policy.mode``);
- where a thread that runs again after failing starts (``resume_from_failed_turn``).

A thread's ``last_turn_seq`` is how far it has got: a completed turn at or before it is
reused, one after it runs again. Resuming from the failed turn leaves it as it is (the
failed turn is the first not completed); restarting from the first turn sets it back to 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from wf_pipeline.gates import GateResult
from wf_pipeline.metadata.records import ThreadRecord, TurnRecord, now_ms
from wf_pipeline.profiles import FailurePolicy, LoadedProfile
from wf_pipeline.runtime.environment import RuntimeEnv

# Statuses of a thread that a resume may pick up again.
RESUMABLE_STATUSES = ("failed", "aborted", "running", "pending")


def gate_stops_thread(policy: FailurePolicy, gate: GateResult | None) -> bool:
    """Whether this verdict fails its turn and stops the thread.

    Args:
        policy: the profile's failure policy.
        gate: the verdict of the turn's gate, or None for a turn without a gate.

    Returns:
        True for a failing verdict under ``mode: stop_on_gate_fail``; False for a passing
        verdict, no gate, or ``mode: continue`` (the verdict is still recorded).
    """
    return gate is not None and not gate.passed and policy.stop_on_gate_fail


def turn_is_settled(thread: ThreadRecord, latest: TurnRecord | None) -> bool:
    """Whether a turn's latest attempt completed within the thread's progress.

    Args:
        thread: the thread as recorded now.
        latest: the turn's highest attempt, or None when it never ran.

    Returns:
        True when that attempt completed with an output at or before the thread's
        ``last_turn_seq``; a turn after it (a restarted thread) runs again. Whether the
        output's bytes are still in the CAS is the caller's check.
    """
    return (
        latest is not None
        and latest.status == "completed"
        and latest.output_artifact_id is not None
        and latest.turn_seq <= thread.last_turn_seq
    )


def resume_seq(loaded: LoadedProfile, thread: ThreadRecord, history: Mapping[str, TurnRecord]) -> int | None:
    """The seq of the first turn a resume of ``thread`` runs.

    Args:
        loaded: the thread's profile (its ``failure_policy.resume_from_failed_turn``).
        thread: the thread as recorded.
        history: turn_id -> latest attempt (`RecordStore.latest_turns`).

    Returns:
        None when there is nothing to resume (the thread completed, or is in a status
        `RESUMABLE_STATUSES` does not list). Otherwise the first turn's seq when
        ``resume_from_failed_turn`` is false, else the seq of the first turn not settled
        (`turn_is_settled`), i.e. the failed or interrupted one.
    """
    if thread.status not in RESUMABLE_STATUSES:
        return None
    turns = loaded.profile.ordered_turns()
    if not loaded.profile.failure_policy.resume_from_failed_turn:
        return turns[0].seq
    for turn in turns:
        if not turn_is_settled(thread, history.get(turn.turn_id)):
            return turn.seq
    return None


def prepare_resume(env: RuntimeEnv, loaded: LoadedProfile, thread: ThreadRecord) -> ThreadRecord:
    """Apply the resume rule to a thread about to be resumed; returns the thread as recorded.

    Restarting before turns the thread had completed records the thread as ``pending``
    with ``last_turn_seq`` just before the restart, so those turns run again (new
    attempts; their earlier outputs stay in the CAS and their records stay). Resuming
    from the failed turn changes nothing: completed turns are reused as they are.

    Args:
        env: the runtime (its record store is read and, on a restart, written).
        loaded: the thread's profile.
        thread: the thread to resume.

    Returns:
        The thread record after the rule is applied (unchanged when nothing moved back).

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``, or ``RECORD_INVALID`` / ``RECORD_INTEGRITY``
            when the rewound thread cannot be saved.
    """
    history = env.records.latest_turns(thread.thread_id)
    seq = resume_seq(loaded, thread, history)
    if seq is None or not any(turn_is_settled(thread, t) and t.turn_seq >= seq for t in history.values()):
        return thread  # no completed turn lies at or after the restart: nothing moves back
    rewound = thread.model_copy(
        update={"status": "pending", "last_turn_seq": seq - 1, "updated_at_ms": now_ms()}
    )
    env.records.save_thread(rewound)
    return rewound
