"""The profile's failure policy as the runtime applies it.

Three rules live here and nowhere else:

- whether a gate verdict stops its thread (``failure_policy.mode``);
- where a thread that runs again after failing starts (``resume_from_failed_turn``);
- how a thread that cannot finish is recorded: ``failed``, with its code and message
  (`failed_thread`, `mark_thread_failed`), never left ``running`` or ``pending``.

A thread's ``last_turn_seq`` is how far it has got: a completed turn at or before it is
reused, one after it runs again. A turn its branch skipped (``when:`` false) at or before
it is settled too: a resume keeps the decision and neither decides again nor runs the
turn, unless the inputs the decision read changed since
(`wf_pipeline.runtime.branches.standing_skip`). Resuming from the failed turn leaves it as it is (the
failed turn is the first not completed); restarting from the first turn sets it back to 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wf_pipeline.errors import RUN_TURN_CRASHED, RunError, WfError
from wf_pipeline.gates import GateResult
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import RESUMABLE_STATUSES, ThreadRecord, TurnRecord, now_ms
from wf_pipeline.profiles import FailurePolicy, LoadedProfile
from wf_pipeline.runtime.branches import skip_within_progress, standing_skip
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.security.sinks import product_logger, scrub

log = product_logger(__name__)

# Longest error text kept on a thread or turn record, in characters (the code says what
# went wrong; the text carries its figures).
ERROR_TEXT_LIMIT = 500
#: How a record keeps an error message under a preset that hashes free text; its digest follows.
WITHHELD_PREFIX = "message withheld (redaction strict): "


def gate_stops_thread(policy: FailurePolicy, gate: GateResult | None) -> bool:
    """Whether this verdict fails its turn and stops the thread.

    Args:
        policy: the profile's failure policy.
        gate: the verdict of the turn's gate, or None for a turn without a gate.

    Returns:
        True for a ``fail`` verdict under ``mode: stop_on_gate_fail``; False for ``pass``,
        ``warn`` (never blocking: `wf_pipeline.gates.registry.verdict_outcome`), no gate,
        or ``mode: continue`` (the ``fail`` verdict is still recorded).
    """
    return gate is not None and gate.blocks and policy.stop_on_gate_fail


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
        ``resume_from_failed_turn`` is false, else the seq of the first turn neither
        settled (`turn_is_settled`) nor skipped by a standing branch decision
        (`wf_pipeline.runtime.branches.standing_skip`), i.e. the failed or interrupted one.
    """
    if thread.status not in RESUMABLE_STATUSES:
        return None
    turns = loaded.profile.ordered_turns()
    if not loaded.profile.failure_policy.resume_from_failed_turn:
        return turns[0].seq
    for turn in turns:
        if not _done(loaded, thread, turn.turn_id, history):
            return turn.seq
    return None


def _done(
    loaded: LoadedProfile, thread: ThreadRecord, turn_id: str, history: Mapping[str, TurnRecord]
) -> bool:
    # Settled with its output, or skipped by a decision that stands: a resume keeps it.
    return (
        turn_is_settled(thread, history.get(turn_id))
        or standing_skip(loaded, thread, turn_id, history) is not None
    )


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
    if seq is None or not any(
        (turn_is_settled(thread, t) or skip_within_progress(thread, t)) and t.turn_seq >= seq
        for t in history.values()
    ):
        return thread  # no completed or skipped turn lies at or after the restart: nothing moves back
    rewound = thread.model_copy(
        update={"status": "pending", "last_turn_seq": seq - 1, "updated_at_ms": now_ms()}
    )
    env.records.save_thread(rewound)
    return rewound


def recorded_error_text(text: str, payloads: Iterable[str] = (), *, digest_only: bool = False) -> str:
    """An error message as a thread or turn record keeps it: the records are a log sink.

    Args:
        text: the error's message (codes, ids, digests, sizes and positions by design).
        payloads: the prompt and input texts of the turn, when the caller has them: a
            message that repeats any of them is withheld whole (`security.sinks.scrub`).
        digest_only: the profile's redaction preset hashes free text (``strict``:
            `RedactionPolicy.hash_free_text`): the message is kept as its digest only, and
            the record's error code says what went wrong.

    Returns:
        The scrubbed message (secret-shaped values masked), at most `ERROR_TEXT_LIMIT`
        characters; under ``digest_only``, ``message withheld (redaction strict): sha256:<hex>``.
        Raises nothing.
    """
    if digest_only and not text.startswith(WITHHELD_PREFIX):  # a text recorded once keeps its digest
        return f"{WITHHELD_PREFIX}{digest_text(text)}"
    return scrub(text, payloads=payloads)[:ERROR_TEXT_LIMIT]


def failed_thread(
    thread: ThreadRecord, code: str, text: str, at_ms: int | None = None, *, digest_only: bool = False
) -> ThreadRecord:
    """``thread`` as a failed thread that says why: status ``failed``, ``error_code``, ``error_text``.

    Args:
        thread: the thread as recorded.
        code: a catalogue code, or the verdict ``GATE_FAILED``.
        text: the error's message with its figures; recorded scrubbed (`security.sinks.scrub`:
            secret-shaped values masked) and truncated to `ERROR_TEXT_LIMIT` characters.
        at_ms: when it failed, Unix epoch in ms (now when None).
        digest_only: keep the message as its digest only (`recorded_error_text`).

    Returns:
        A new `ThreadRecord`; ``last_turn_seq`` is kept, so a resume starts where the thread stopped.
    """
    return thread.model_copy(
        update={
            "status": "failed",
            "error_code": code,
            "error_text": recorded_error_text(text, digest_only=digest_only),
            "updated_at_ms": at_ms if at_ms is not None else now_ms(),
        }
    )


def mark_thread_failed(
    env: RuntimeEnv, thread: ThreadRecord, error: BaseException, *, digest_only: bool = False
) -> str:
    """Record that ``thread`` cannot finish because of ``error``; returns the code recorded.

    Used for every error a turn meets outside its provider attempts (a prompt that does not
    render, a budget, the CAS, the record store): the thread ends ``failed`` with the
    error's code and message instead of staying ``running`` or ``pending``.

    Args:
        env: the runtime (its record store is read and written).
        thread: the thread the turn ran in.
        error: a `WfError` (its code and message are kept), or any other exception, kept as
            ``RUN_TURN_CRASHED`` with the exception's type name only (its text may hold data).
        digest_only: the profile hashes free text (``strict``): the message is kept as its
            digest only (`recorded_error_text`).

    Returns:
        The code recorded on the thread.

    Raises nothing: when the record store itself cannot take the write, the failure is
    logged with both codes and the thread stays as it was (a later run or resume picks it up).
    """
    if not isinstance(error, WfError):
        error = RunError(RUN_TURN_CRASHED, f"{type(error).__name__} in a turn of thread {thread.thread_id}")
    code, text = str(error.code), error.message
    try:
        current = env.records.get_thread(thread.thread_id) or thread
        env.records.save_thread(failed_thread(current, code, text, digest_only=digest_only))
    except WfError as exc:
        log.warning("%s: thread %s could not be marked failed (%s)", exc.code, thread.thread_id, code)
    return code
