"""One turn of one thread, in the order the design fixes:

inputs -> prompt render -> prompt/context artifacts -> provider call -> output shape and
size -> output artifact -> gate -> the turn's records in one transaction (frame metadata
through the boundary, digests and ids only).

CAS writes come first and are idempotent, so a crash anywhere leaves at worst orphan
objects and never a record pointing at missing bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from wf_pipeline.cas import ArtifactRef
from wf_pipeline.errors import (
    METADATA_BUDGET_EXCEEDED,
    RUN_CONTEXT_MISSING,
    RUN_INPUT_NOT_READY,
    RUN_OUTPUT_SHAPE,
    RUN_OUTPUT_TOO_LARGE,
    RUN_UNKNOWN_TURN,
    MetadataError,
    RunError,
    WfError,
)
from wf_pipeline.gates import GateResult, evaluate
from wf_pipeline.metadata.boundary import check_artifact_budget
from wf_pipeline.metadata.budgets import Budgets
from wf_pipeline.metadata.canonical import canonical_text, digest, digest_text, parse_json
from wf_pipeline.metadata.payloads import CONTEXT_REF
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    FrameRecord,
    GateRecord,
    PromptLinkRecord,
    ThreadRecord,
    TurnRecord,
    artifact_link_id_for,
    frame_id_for,
    gate_outcome_passed,
    gate_record_id_for,
    now_ms,
    prompt_link_id_for,
    turn_record_id_for,
)
from wf_pipeline.profiles import LoadedProfile, parallel_segment, render_prompt
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.profiles.schema import ArtifactPolicy
from wf_pipeline.providers import ProviderRequest, ProviderResponse
from wf_pipeline.providers.replay import replays
from wf_pipeline.providers.retry import (
    Backoff,
    Deadline,
    call_within,
    is_deterministic,
    provider_retrying,
)
from wf_pipeline.records import TurnCommit
from wf_pipeline.runtime.branches import (
    BRANCH_NOT_TAKEN,
    commit_skip,
    decide,
    decision_already_recorded,
    decision_digest,
    skip_within_progress,
    standing_skip,
)
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.failure import (
    ERROR_TEXT_LIMIT,
    failed_thread,
    gate_stops_thread,
    recorded_error_text,
    turn_is_settled,
)
from wf_pipeline.runtime.integrity import GONE_ON_PURPOSE, describe_unusable, unusable_reason
from wf_pipeline.runtime.measure import (
    WriteSite,
    record_artifact_links,
    record_branch_decision,
    record_frame_metadata,
    record_rejection,
)
from wf_pipeline.runtime.requests import build_request, request_digest, response_class, reusable_answer
from wf_pipeline.runtime.targets import Target
from wf_pipeline.runtime.threads import (
    context_snapshot,
    final_artifact_id,
    final_output_type,
    frame_type_of,
    recorded_context_id,
)
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.text.model_output import unwrap_model_output
from wf_pipeline.text.names import display_name
from wf_pipeline.text.tokens import count_tokens, max_tokens_of_bytes
from wf_pipeline.tree import TreeScan

log = product_logger(__name__)

# "skipped": the turn did not run for the thread (no provider call, no record).
TurnStatus = Literal["completed", "failed", "skipped"]

# The verdict recorded on a turn (and its thread) whose gate failed and stops the thread:
# not an error raised, so not in the error catalogue.
GATE_FAILED = "GATE_FAILED"
# The class a provider's raw answer is stored under (retention windows and encryption per class).
RESPONSE_CLASS = class_of_link("provider_response", None)
# Why a directory's turn waits: its child directories' threads have not finished. Not a failure.
CHILDREN_PENDING = "RUN_CHILDREN_PENDING"


@dataclass(frozen=True)
class TurnOutput:
    """What a turn hands downstream: ids, status and gate verdict, never payload text.

    Attributes:
        thread_id: the thread.
        turn_id: the turn.
        output_type: the turn's output type.
        target_key: the target (partition) key.
        status: ``completed``, ``failed`` or ``skipped``.
        attempt: the attempt number the outcome comes from (0 when skipped).
        artifact_id: the output artifact (``sha256:<hex>``), None when none was produced.
        artifact_size: the output artifact's size in bytes (0 when none).
        input_artifact_ids: the artifacts the turn read, in ``input_refs`` order.
        gate_id: the turn's gate, None for a turn without one.
        gate_outcome: ``pass``, ``warn`` or ``fail``; None when no gate was evaluated.
        gate_reasons: the gate's sorted reason codes.
        gate_findings: one ``{"rule_id", "code", "pointer", "hint"}`` per reason, sorted.
        provider_calls: provider calls this invocation made (0 when reused or skipped).
        reused: whether an earlier completed attempt was returned without a call.
        error_code: why the turn failed or was skipped (a catalogue code,
            ``GATE_FAILED``, ``RUN_CHILDREN_PENDING`` or ``BRANCH_NOT_TAKEN``), else None.
        error_text: the error's message with its figures, if any.
        branch: ``taken`` or ``not_taken`` for a turn that declares ``when:`` and was
            decided (``not_taken``: skipped by its branch, ``BRANCH_NOT_TAKEN``), else None.
        decision_digest: digest of the recorded decision (`decision_digest`), with ``branch``.
    """

    thread_id: str
    turn_id: str
    output_type: str
    target_key: str
    status: TurnStatus
    attempt: int
    artifact_id: str | None
    artifact_size: int
    input_artifact_ids: tuple[str, ...]
    gate_id: str | None
    gate_outcome: str | None
    gate_reasons: tuple[str, ...] = ()
    gate_findings: tuple[dict[str, str], ...] = ()
    provider_calls: int = 0
    reused: bool = False
    error_code: str | None = None
    error_text: str | None = None
    # ``taken``/``not_taken`` for a turn with ``when:`` (`wf_pipeline.runtime.branches`), else None.
    branch: str | None = None
    decision_digest: str | None = None

    @classmethod
    def skipped(
        cls,
        thread_id: str,
        turn: Any,
        target_key: str,
        reason_code: str,
        *,
        status: TurnStatus = "skipped",
        error_text: str | None = None,
    ) -> TurnOutput:
        """A turn that did not run for this thread (no provider call, no turn record).

        Args:
            thread_id: the thread.
            turn: the turn's spec (its ``turn_id``, ``output_type`` and ``gate_id``).
            target_key: the target (partition) key.
            reason_code: why it did not run, kept as ``error_code``.
            status: ``skipped`` (it waits, e.g. ``RUN_CHILDREN_PENDING``, or an earlier turn
                failed) or ``failed`` (the turn met an error before its provider call and
                its thread is recorded failed).
            error_text: the error's message with its figures, if any.

        Returns:
            An output with attempt 0 and no artifact.
        """
        return cls(
            thread_id=thread_id,
            turn_id=turn.turn_id,
            output_type=turn.output_type,
            target_key=target_key,
            status=status,
            attempt=0,
            artifact_id=None,
            artifact_size=0,
            input_artifact_ids=(),
            gate_id=turn.gate_id,
            gate_outcome=None,
            error_code=reason_code,
            error_text=error_text,
        )

    @property
    def not_taken(self) -> bool:
        """Whether the turn's branch skipped it (a decision, not a failure: later turns go on)."""
        return self.status == "skipped" and self.error_code == BRANCH_NOT_TAKEN

    @property
    def gate_passed(self) -> bool:
        """Whether the gate has nothing to say: a ``pass`` verdict, or no verdict at all."""
        return self.gate_outcome is None or gate_outcome_passed(self.gate_outcome)


@dataclass(frozen=True)
class _Snapshot:
    """The turn's inputs, fixed before the first attempt so retries see the same bytes."""

    artifact_ids: dict[str, str]
    texts: dict[str, str]
    system_prompt: str
    user_prompt: str
    artifacts: dict[str, tuple[str, int]] = field(default_factory=dict)  # role -> (id, size)
    template_digest: str = ""
    system_template_digest: str | None = None

    @property
    def inputs(self) -> dict[str, tuple[str, int]]:
        """input_ref -> (artifact id, size); texts came out of the CAS as canonical UTF-8."""
        return {ref: (self.artifact_ids[ref], len(text.encode("utf-8"))) for ref, text in self.texts.items()}


def run_turn(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    target: Target,
    turn_id: str,
    scan: TreeScan | None = None,
) -> TurnOutput:
    """Run (or reuse) ``turn_id`` of ``thread``. Completed turns never call the provider again.

    A completed turn whose output is missing, expired or corrupt (quarantined by
    `unusable_reason`) runs again with a warning naming the reason's code
    (``CAS_ARTIFACT_EXPIRED`` for an object retention deleted); an input whose recorded
    output is unusable has its producing turn run again first. Either way a completed
    thread stays completed. A completed thread whose final output is usable is reused
    whole: an earlier turn whose output retention deleted is reused, not run again.

    Args:
        env: the open runtime (provider, CAS, records).
        loaded: the thread's profile with its templates.
        thread: the thread's current record.
        target: the thread's target.
        turn_id: the turn to run.
        scan: the tree scan of this run, if the caller has one (else the context is rebuilt).

    Returns:
        The turn's `TurnOutput`: ``completed`` (or ``failed`` on a failing gate that stops
        the thread) with the output artifact, or ``failed`` with the last attempt's error
        code once retries are over.

    Attempts: the turn's retry policy (`LoadedProfile.retry_policy`: its ``retry`` block,
    by default 1 + min(retry_limit, thread_policy.max_turn_retries) with the default
    backoff), numbered on from the last recorded attempt, each committed as its own turn
    record. Only errors the catalogue marks retryable, and that the policy's
    ``retryable_codes`` list when it has one, are retried (and, for a provider that declares itself
    ``deterministic``, not an output too large or of the wrong shape, which would repeat), after exponential backoff with jitter and
    never sooner than a server's Retry-After (HTTP, RFC 9110 section 10.2.3;
    `wf_pipeline.providers.retry`). The turn's timeout_ms is a deadline for all attempts
    and waits: a call still running at the deadline is recorded as ``PROVIDER_TIMEOUT``
    and its late answer is dropped; a wait that would cross the deadline is not started,
    and the last error stands. Provider errors and unusable output (``RUN_OUTPUT_TOO_LARGE``
    over ``max_output_bytes``, ``RUN_OUTPUT_SHAPE``) are recorded attempts, not exceptions.

    Branches: a turn that declares ``when:`` is decided first (`wf_pipeline.runtime.branches`).
    False: it is recorded ``skipped`` with the decision, without a call, and the output says
    ``BRANCH_NOT_TAKEN`` (``branch="not_taken"``); a recorded skip within the thread's
    progress stands. True: it runs, and each attempt records the decision. An input whose
    producer's branch was not taken is absent: left out of the provider's inputs, None in
    the templates.

    Raises:
        RunError: ``RUN_UNKNOWN_TURN``, ``RUN_INPUT_NOT_READY``, ``RUN_TARGET_CHANGED``
            (the context is built from a changed tree), ``RUN_CONTEXT_MISSING``,
            ``RUN_BRANCH_UNREADABLE`` (an output its ``when:`` reads does not parse).
        ProfileError: ``PROFILE_TEMPLATE_*`` when a prompt does not render.
        MetadataError: ``METADATA_BUDGET_EXCEEDED`` for an over-budget prompt or context,
            or a prompt whose counted tokens overflow ``max_context_tokens`` (before
            anything is written); the frame-metadata boundary's ``METADATA_*``
            codes for a final frame.
        GateError: ``GATE_UNKNOWN_TYPE``, ``GATE_RULES_INVALID`` from the gate.
        CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_DECODE_ERROR`` for an
            input; ``CAS_BACKEND_ERROR``.
        TreeError: as `wf_pipeline.runtime.threads.context_snapshot`.
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    profile = loaded.profile
    turn = next((t for t in profile.ordered_turns() if t.turn_id == turn_id), None)
    if turn is None:
        raise RunError(RUN_UNKNOWN_TURN, f"{profile.workflow_id} has no turn {turn_id!r}")
    history = env.records.latest_turns(thread.thread_id)
    latest = history.get(turn_id)
    standing = standing_skip(loaded, thread, turn_id, history)
    if standing is not None:
        # Decided before, within the thread's progress, over inputs that have not changed:
        # the decision stands (a resume or a later step reads it back, deciding nothing).
        return _not_taken_output(thread, turn, target, standing)
    if turn_is_settled(thread, latest):
        reason = unusable_reason(env, latest.output_artifact_id, class_of_link("output", turn.output_type))
        if reason is None:
            return _reused_output(env, thread, turn, target, latest)
        if reason in GONE_ON_PURPOSE and _reused_whole(env, loaded, thread, turn):
            # Retention deleted an intermediate of a thread whose final output is still
            # usable: nothing downstream needs it, so the thread is reused as it stands.
            return _reused_output(env, thread, turn, target, latest)
        # Its output is gone, expired or was corrupt (now quarantined): this turn runs
        # again; the completed turns after it stay settled (see _Attempt.thread_update).
        log.warning(
            "%s: turn %s of thread %s runs again: its output %s %s",
            reason,
            turn.turn_id,
            thread.thread_id,
            latest.output_artifact_id,
            describe_unusable(reason),
        )
    thread, history = _regenerate_lost_inputs(env, loaded, thread, target, turn, scan, history)
    decision = decide(env, loaded, thread, turn.turn_id, history)
    if decision is not None:
        _record_decision(env, loaded, thread, turn, decision.to_json(), latest)
    if decision is not None and not decision.result:
        record = commit_skip(env, loaded, thread, turn, decision, latest)
        log.info(
            "turn %s of thread %s: branch not taken (%s)",
            turn.turn_id,
            thread.thread_id,
            record.turn_record_id,
        )
        return _not_taken_output(thread, turn, target, record)

    snapshot = _snapshot_inputs(env, loaded, thread, target, turn, scan, history)
    gate_spec = profile.gate(turn.gate_id) if turn.gate_id else None
    # The turn's retry policy (`wf_pipeline.profiles.retry`); a resumed or replayed thread's
    # profile is its pinned snapshot, so its attempts follow the policy they were recorded under.
    policy = loaded.retry_policy(turn.turn_id)
    first = (latest.attempt + 1) if latest else 1
    # timeout_ms bounds the whole turn: every attempt and every wait between attempts.
    deadline = Deadline(turn.timeout_ms)
    failures: list[TurnOutput] = []
    request = _request_record(env, loaded, turn, snapshot)
    asked = RequestAsked(request, request_digest(request))
    # An earlier answer to the very same request is taken instead of a call, once: a retry
    # after it asks the provider (`wf_pipeline.runtime.requests.reusable_answer`).
    reusable = (
        None
        if replays(env.provider) or not env.settings.reuse_responses
        else _reusable(env, asked, turn.output_type)
    )
    seen: list[_Answer] = []

    def attempt_once() -> tuple[_Attempt, ProviderResponse, bytes, _Answer]:
        number = first + len(failures)
        attempt = _Attempt(
            env,
            loaded,
            thread,
            target,
            turn,
            snapshot,
            number,
            now_ms(),
            asked,
            decision.to_json() if decision is not None else None,
        )
        answer = _Answer()
        seen.append(answer)
        try:
            response = _answer(env, attempt, deadline, reusable if not failures else None, answer)
            output_bytes = _checked_output(
                response.text, turn.output_format, profile.artifact_policy.max_output_bytes
            )
            _keep_response(env, answer, output_bytes)
        except WfError as exc:
            _keep_response(env, answer, None)
            failed = _commit_failed(attempt, exc, _calls(seen), answer)
            failures.append(failed)
            # CODE: message first, as every error a user sees; the message as the records keep
            # it (its figures, or its digest under a preset that hashes free text).
            log.warning(
                "%s: %s (turn %s of thread %s, attempt %d)",
                exc.code,
                failed.error_text,
                turn.turn_id,
                thread.thread_id,
                number,
            )
            raise _RecordedFailure(exc) from exc
        return attempt, response, output_bytes, answer

    retrying = provider_retrying(
        policy.attempts,
        deadline,
        deterministic=is_deterministic(env.provider),
        error_of=_recorded_error,
        backoff=Backoff.of_ms(policy.initial_ms, policy.max_ms, policy.jitter_ms),
        retries_code=policy.retries,
        # A wait between attempts (a Retry-After may be long) ends when the run is interrupted;
        # the next attempt then records RUN_INTERRUPTED without calling. A replay waits for
        # nothing: its answers are recorded.
        sleep=_no_wait if replays(env.provider) else env.interrupt.wait,
        label=f"turn {turn.turn_id} of thread {thread.thread_id}",
    )
    try:
        attempt, response, output_bytes, answer = retrying(attempt_once)
    except _RecordedFailure:
        return failures[-1]
    # Output artifact first, then the gate, then every record of the turn at once.
    output_ref = env.cas.put(output_bytes, artifact_class=class_of_link("output", turn.output_type))
    gate = evaluate(gate_spec, output_bytes.decode("utf-8"), snapshot.texts) if gate_spec else None
    return _commit_completed(attempt, output_ref, gate, response, _calls(seen), answer)


def restore_turn_artifacts(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    target: Target,
    turn_id: str,
    scan: TreeScan | None = None,
) -> None:
    """Store again the prompt and context artifacts of a turn, without calling the provider.

    The turn's inputs are snapshotted as a new attempt would (template, rendered prompts
    under the artifact policy, the context snapshot); rendering is deterministic, so the
    same inputs give the same ids back. Used to bring back such artifacts after they were
    lost or quarantined (`wf_pipeline.runtime.repair`).

    Args:
        env: the runtime (records read, CAS read and written).
        loaded: the thread's profile.
        thread: the thread.
        target: the thread's target.
        turn_id: the turn.
        scan: the tree scan, if the caller has one.

    Raises:
        RunError: ``RUN_UNKNOWN_TURN``, ``RUN_INPUT_NOT_READY``, ``RUN_TARGET_CHANGED``.
        ProfileError, MetadataError, CasError, TreeError, RecordError: as `run_turn`
            before its provider call.
    """
    turn = next((t for t in loaded.profile.ordered_turns() if t.turn_id == turn_id), None)
    if turn is None:
        raise RunError(RUN_UNKNOWN_TURN, f"{loaded.profile.workflow_id} has no turn {turn_id!r}")
    history = env.records.latest_turns(thread.thread_id)
    thread, history = _regenerate_lost_inputs(env, loaded, thread, target, turn, scan, history)
    _snapshot_inputs(env, loaded, thread, target, turn, scan, history)


def _regenerate_lost_inputs(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    target: Target,
    turn: Any,
    scan: TreeScan | None,
    history: Mapping[str, TurnRecord],
) -> tuple[ThreadRecord, Mapping[str, TurnRecord]]:
    """Run again the producer of every input whose recorded output is missing or corrupt.

    Returns the thread and its latest turns as recorded afterwards (unchanged when every
    input is intact). Raises ``RUN_INPUT_NOT_READY`` when a producer could not complete
    again; the producer's own attempt records why.
    """
    producers = {t.output_type: t for t in loaded.profile.ordered_turns()}
    for ref in turn.input_refs:
        if ref == CONTEXT_REF:
            continue  # the context snapshot is checked and rebuilt by context_snapshot
        producer = producers[ref]
        upstream = history.get(producer.turn_id)
        if upstream is None or upstream.status != "completed" or upstream.output_artifact_id is None:
            continue  # not produced yet: _snapshot_inputs reports RUN_INPUT_NOT_READY
        reason = unusable_reason(
            env, upstream.output_artifact_id, class_of_link("output", producer.output_type)
        )
        if reason is None:
            continue
        log.warning(
            "%s: turn %s of thread %s runs again: input %s (%s) %s",
            reason,
            producer.turn_id,
            thread.thread_id,
            ref,
            upstream.output_artifact_id,
            describe_unusable(reason),
        )
        produced = run_turn(env, loaded, thread, target, producer.turn_id, scan)
        if produced.status != "completed":
            raise RunError(
                RUN_INPUT_NOT_READY,
                f"turn {turn.turn_id} of thread {thread.thread_id} needs {ref}, whose producer "
                f"{producer.turn_id} ran again and ended {produced.status} ({produced.error_code})",
            )
        thread = env.records.get_thread(thread.thread_id) or thread
        history = env.records.latest_turns(thread.thread_id)
    return thread, history


class _RecordedFailure(Exception):
    """An attempt's error after its failed turn record was committed; the retry loop judges ``error``."""

    def __init__(self, error: WfError) -> None:
        super().__init__(error.code)
        self.error = error


def _recorded_error(exc: BaseException | None) -> WfError | None:
    # Only recorded failures are retried: anything else (a record-store error) propagates.
    return exc.error if isinstance(exc, _RecordedFailure) else None


def _no_wait(seconds: float) -> bool:
    # The sleep of a replay's retry loop: nothing to wait for, and never interrupted.
    return False


@dataclass(frozen=True)
class RequestAsked:
    """The request a turn's attempts make (`wf_pipeline.runtime.requests`) and its digest."""

    request: dict[str, Any]
    digest: str


@dataclass
class _Answer:
    """How one attempt was answered: where from, its text, and the response artifact kept.

    ``response`` is a ``provider_response`` artifact put for this attempt, or the recorded
    one a reused answer points at; ``is_output`` says the answer's bytes are the output's
    own (then no second object is put: one object would otherwise belong to two classes,
    with two retention windows and two keys).
    """

    source: str | None = None
    response: ArtifactRef | None = None
    text: str | None = None
    is_output: bool = False


def _keep_response(env: RuntimeEnv, answer: _Answer, output_bytes: bytes | None) -> None:
    """Store a provider's answer as a ``provider_response`` artifact, unless it is the output itself."""
    if answer.text is None or answer.response is not None:
        return  # no answer came back, or it is a recorded one already stored
    if output_bytes is not None and canonical_text(answer.text) == output_bytes:
        answer.is_output = True
        return
    answer.response = env.cas.put_text(answer.text, artifact_class=RESPONSE_CLASS)


def _calls(answers: list[_Answer]) -> int:
    # Provider calls of a turn: attempts a provider was asked in (not recorded or replayed answers).
    return sum(1 for answer in answers if answer.source == "provider")


def _request_record(env: RuntimeEnv, loaded: LoadedProfile, turn: Any, snapshot: _Snapshot) -> dict[str, Any]:
    return build_request(
        env.provider,
        output_type=turn.output_type,
        output_format=turn.output_format,
        max_output_bytes=loaded.profile.artifact_policy.max_output_bytes,
        system_prompt=snapshot.system_prompt,
        user_prompt=snapshot.user_prompt,
        input_ids=snapshot.artifact_ids,
        template_digest=snapshot.template_digest,
        system_template_digest=snapshot.system_template_digest,
    )


def _reusable(env: RuntimeEnv, asked: RequestAsked, output_type: str) -> tuple[ArtifactRef, str] | None:
    """The stored response of an earlier answer to ``asked`` and its artifact class, if recorded and readable."""
    answer = reusable_answer(env.records, asked.digest)
    if answer is None or answer.response_artifact_id is None:
        return None
    artifact_class = response_class(answer, output_type)
    if unusable_reason(env, answer.response_artifact_id, artifact_class) is not None:
        return None  # expired or gone: the provider is asked instead
    return ArtifactRef(answer.response_artifact_id, env.cas.size(answer.response_artifact_id)), artifact_class


def _answer(
    env: RuntimeEnv,
    attempt: _Attempt,
    deadline: Deadline,
    reusable: tuple[ArtifactRef, str] | None,
    answer: _Answer,
) -> ProviderResponse:
    """One attempt's answer: a recorded one when ``reusable``, else the provider's.

    Fills ``answer`` as it goes, so a failure after the answer came back is recorded with it;
    `_keep_response` stores a new answer once the output check has judged it.
    """
    if reusable is not None:
        ref, artifact_class = reusable
        text = env.cas.get_text(ref.artifact_id, artifact_class=artifact_class)
        answer.source, answer.response = "recorded", ref
        return ProviderResponse(text=text, provider_type=env.provider.provider_type, model=env.provider.model)
    replay = replays(env.provider)
    if not replay and not env.interrupt.is_set():
        env.note_provider_call(attempt.thread.thread_id)  # this process's own count (`RunSummary`)
    answer.source = "replay" if replay else "provider"
    response = call_within(env.provider, _request(attempt, deadline), deadline, env.interrupt)
    answer.text = response.text
    return response


def _request(attempt: _Attempt, deadline: Deadline) -> ProviderRequest:
    turn = attempt.turn
    return ProviderRequest(
        workflow_id=attempt.loaded.profile.workflow_id,
        thread_id=attempt.thread.thread_id,
        turn_id=turn.turn_id,
        output_type=turn.output_type,
        output_format=turn.output_format,
        system_prompt=attempt.snapshot.system_prompt,
        user_prompt=attempt.snapshot.user_prompt,
        inputs=attempt.snapshot.texts,
        # The call may take what is left of the turn's deadline (at least 1 ms).
        timeout_ms=max(1, deadline.remaining_ms()),
        max_output_bytes=attempt.loaded.profile.artifact_policy.max_output_bytes,
        request_digest=attempt.asked.digest,
    )


def _reused_whole(env: RuntimeEnv, loaded: LoadedProfile, thread: ThreadRecord, turn: Any) -> bool:
    """Whether ``thread`` is completed and its final output (not ``turn``'s) is stored and intact."""
    if thread.status != "completed" or turn.output_type == final_output_type(loaded):
        return False
    return final_artifact_id(env, loaded, thread.thread_id) is not None


def _recorded_output_size(env: RuntimeEnv, thread: ThreadRecord, turn: Any, latest: TurnRecord) -> int:
    """The reused output's size in bytes: stored size, else its output link's (an expired object)."""
    artifact_id = latest.output_artifact_id
    if env.cas.exists(artifact_id):
        return env.cas.size(artifact_id)
    return next(
        (
            link.size
            for link in env.records.artifact_links_for_thread(thread.thread_id)
            if link.role == "output" and link.turn_id == turn.turn_id and link.artifact_id == artifact_id
        ),
        0,
    )


def _reused_output(
    env: RuntimeEnv, thread: ThreadRecord, turn: Any, target: Target, latest: TurnRecord
) -> TurnOutput:
    gate = next(
        (
            g
            for g in reversed(env.records.gates_for_thread(thread.thread_id))
            if g.turn_id == turn.turn_id and g.attempt == latest.attempt
        ),
        None,
    )
    return TurnOutput(
        thread_id=thread.thread_id,
        turn_id=turn.turn_id,
        output_type=turn.output_type,
        target_key=target.key,
        status="completed",
        attempt=latest.attempt,
        artifact_id=latest.output_artifact_id,
        artifact_size=_recorded_output_size(env, thread, turn, latest),
        input_artifact_ids=latest.input_artifact_ids,
        gate_id=gate.gate_id if gate else turn.gate_id,
        gate_outcome=gate.outcome if gate else None,
        gate_reasons=gate.reasons if gate else (),
        gate_findings=gate.findings if gate else (),
        reused=True,
        branch="taken" if latest.branch is not None else None,
        decision_digest=decision_digest(latest.branch),
    )


def render_variables(
    workflow_id: str, turn_id: str, target_path: str, target_name: str, inputs: Mapping[str, str | None]
) -> dict[str, Any]:
    """The variables a turn's prompt templates are rendered with (`profiles.render.RENDER_VARIABLES`).

    Args:
        workflow_id: the profile's workflow id.
        turn_id: the turn being rendered.
        target_path: the target directory, relative to the tree's root (``.`` for the root).
        target_name: the directory's own name (the root's folder name for ``.``).
        inputs: input ref -> its text (the context payload's JSON, earlier turns' outputs);
            None for the output of a turn whose branch was not taken.

    Returns:
        ``{"workflow_id", "turn_id", "target_path", "target_name", "inputs"}``; runs and
        ``wf profiles validate``'s sample render both build them here. Raises nothing.
    """
    return {
        "workflow_id": workflow_id,
        "turn_id": turn_id,
        "target_path": target_path,
        "target_name": target_name,
        "inputs": dict(inputs),
    }


def _snapshot_inputs(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    target: Target,
    turn: Any,
    scan: TreeScan | None,
    latest: Mapping[str, TurnRecord],
) -> _Snapshot:
    profile = loaded.profile
    producers = {t.output_type: t for t in profile.ordered_turns()}
    artifact_ids: dict[str, str] = {}
    for ref in turn.input_refs:
        if ref == CONTEXT_REF:
            artifact_ids[ref] = context_snapshot(env, loaded, thread, target, scan)
            continue
        upstream = latest.get(producers[ref].turn_id)
        if skip_within_progress(thread, upstream):
            # Its branch was not taken: the input is absent (None in templates, left out of
            # the provider's inputs), not missing.
            continue
        if upstream is None or upstream.status != "completed" or upstream.output_artifact_id is None:
            raise RunError(
                RUN_INPUT_NOT_READY,
                f"turn {turn.turn_id} of thread {thread.thread_id} needs {ref}, which has no completed output",
            )
        artifact_ids[ref] = upstream.output_artifact_id
    texts = {
        ref: env.cas.get_text(
            artifact_id,
            artifact_class=class_of_link("context", None)
            if ref == CONTEXT_REF
            else class_of_link("output", producers[ref].output_type),
        )
        for ref, artifact_id in artifact_ids.items()
    }

    target_name = target.root.name if target.path == "." else target.path.rsplit("/", 1)[-1]
    # One line each, every character visible: a name may hold any character but "/" and NUL.
    # An input whose producer's branch was not taken renders as None.
    absent = {ref: None for ref in turn.input_refs if ref not in texts}
    variables = render_variables(
        profile.workflow_id,
        turn.turn_id,
        display_name(target.path),
        display_name(target_name),
        texts | absent,
    )
    template = loaded.templates[turn.turn_id]
    system_template = loaded.system_prompts.get(turn.turn_id)
    user_prompt = render_prompt(template, variables)
    system_prompt = render_prompt(system_template, variables) if system_template else ""

    # The profile's budgets: the loader proved the prompt fits them for any tree, so these
    # checks hold by construction; they still guard a context snapshot recorded under a
    # larger max_context_bytes than the profile has now.
    budgets = profile_budgets(env, loaded)
    check_artifact_budget("prompt", len(canonical_text(system_prompt + user_prompt)), budgets)
    if CONTEXT_REF in texts:
        check_artifact_budget("context", len(canonical_text(texts[CONTEXT_REF])), budgets)
    check_token_window(profile.artifact_policy, system_prompt + user_prompt, turn.turn_id)
    return _Snapshot(
        artifact_ids,
        texts,
        system_prompt,
        user_prompt,
        _stored_prompt_artifacts(
            env, loaded, template.text, system_prompt if system_template else None, user_prompt
        )
        | _context_artifact(env, artifact_ids),
        template_digest=template.digest,
        system_template_digest=system_template.digest if system_template else None,
    )


def check_token_window(policy: ArtifactPolicy, prompt: str, turn_id: str) -> None:
    """Refuse a prompt whose counted tokens and the largest output overflow the model's window.

    Only for a profile that names a ``tokenizer`` and a ``max_context_tokens``; without a
    tokenizer the loader already proved the window holds (`wf_pipeline.profiles.budget`).

    Args:
        policy: the profile's artifact policy.
        prompt: the system and user prompt, as sent.
        turn_id: the turn, for the message.

    Raises:
        MetadataError: ``METADATA_BUDGET_EXCEEDED`` (budget ``max_context_tokens``) with the
            prompt's token count, the output's bound and the window.
    """
    window, encoding = policy.max_context_tokens, policy.tokenizer
    if window is None or encoding is None:
        return
    tokens = count_tokens(prompt, encoding)
    needed = tokens + max_tokens_of_bytes(policy.max_output_bytes)
    if needed > window:
        raise MetadataError(
            METADATA_BUDGET_EXCEEDED,
            f"turn {turn_id}: prompt of {tokens} tokens ({encoding}) + up to {policy.max_output_bytes} "
            f"output tokens (max_output_bytes) exceeds max_context_tokens of {window}",
            budget="max_context_tokens",
            scope="prompt_tokens",
            size=needed,
            limit=window,
            prompt_tokens=tokens,
        )


def profile_budgets(env: RuntimeEnv, loaded: LoadedProfile) -> Budgets:
    """The env's budgets with the profile's prompt and context limits.

    Args:
        env: the runtime (its metadata budgets are kept).
        loaded: the profile; ``artifact_policy.max_prompt_bytes`` and ``max_context_bytes``
            replace the prompt and context artifact budgets.

    Returns:
        A `Budgets` for this profile's turns.
    """
    policy = loaded.profile.artifact_policy
    return replace(
        env.budgets,
        prompt_artifact_max_bytes=policy.max_prompt_bytes,
        context_artifact_max_bytes=policy.max_context_bytes,
    )


def _stored_prompt_artifacts(
    env: RuntimeEnv, loaded: LoadedProfile, template_text: str, system_prompt: str | None, user_prompt: str
) -> dict[str, tuple[str, int]]:
    """Put the turn's prompt artifacts the artifact policy keeps; role -> (artifact id, bytes).

    The user prompt template is always kept (it is profile content, not target data).
    ``store_prompt_render`` decides both rendered prompts, the system prompt's included,
    since both are rendered with the target's variables. The frame's ``prompt_digest``
    identifies the prompt either way.
    """
    prompt_class = class_of_link("prompt_template", None)
    template_ref = env.cas.put_text(template_text, artifact_class=prompt_class)
    artifacts = {"prompt_template": (template_ref.artifact_id, template_ref.size)}
    if not loaded.profile.artifact_policy.store_prompt_render:
        return artifacts
    if system_prompt is not None:
        system_ref = env.cas.put_text(system_prompt, artifact_class=prompt_class)
        artifacts["system_prompt"] = (system_ref.artifact_id, system_ref.size)
    rendered_ref = env.cas.put_text(user_prompt, artifact_class=prompt_class)
    artifacts["rendered_prompt"] = (rendered_ref.artifact_id, rendered_ref.size)
    return artifacts


def _context_artifact(env: RuntimeEnv, artifact_ids: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """The context snapshot's artifact link, for a turn that reads it.

    The snapshot is always kept when a turn reads it (later turns, retries and resumes
    read it back); the loader rejects ``store_context_payload: false`` for such profiles
    (``PROFILE_ARTIFACT_POLICY_CONFLICT``), so there is no policy to consult here.
    """
    if CONTEXT_REF not in artifact_ids:
        return {}
    return {"context": (artifact_ids[CONTEXT_REF], env.cas.size(artifact_ids[CONTEXT_REF]))}


def _checked_output(text: str, output_format: str, max_output_bytes: int) -> bytes:
    """The output bytes the turn stores: the reply unwrapped (`unwrap_model_output`: a leading
    reasoning block and a surrounding fence removed), canonical, within the size limit and of
    the turn's shape. Raises RunError RUN_OUTPUT_TOO_LARGE, RUN_OUTPUT_SHAPE.

    The messages say where and which output (its byte count, digest and the parser's
    position), never what the output says: they become the turn's error text and logs."""
    data = canonical_text(unwrap_model_output(text))
    if len(data) > max_output_bytes:
        raise RunError(RUN_OUTPUT_TOO_LARGE, f"output has {len(data)} bytes, limit {max_output_bytes}")
    if output_format == "json":
        try:
            parsed = parse_json(data)
        except json.JSONDecodeError as exc:
            # JSONDecodeError.msg is the parser's fixed wording; str(exc) is too, but the
            # position fields are what a reader needs, and no part of the document is kept.
            raise RunError(
                RUN_OUTPUT_SHAPE,
                f"output {digest(data)} ({len(data)} bytes) is not a JSON document: "
                f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
                output_digest=digest(data),
                line=exc.lineno,
                column=exc.colno,
                position=exc.pos,
            ) from None
        if not isinstance(parsed, dict):
            raise RunError(
                RUN_OUTPUT_SHAPE,
                f"output {digest(data)} is a JSON {type(parsed).__name__}, not an object",
                output_digest=digest(data),
            )
    elif not data.strip():
        raise RunError(RUN_OUTPUT_SHAPE, "output is empty")
    return data


@dataclass(frozen=True)
class _Attempt:
    """One try of one turn: everything its records are derived from."""

    env: RuntimeEnv
    loaded: LoadedProfile
    thread: ThreadRecord
    target: Target
    turn: Any
    snapshot: _Snapshot
    number: int
    started_ms: int
    asked: RequestAsked
    # The true decision of the turn's ``when:`` that let it run; None for an unconditional turn.
    branch: dict[str, Any] | None = None

    @property
    def workflow_id(self) -> str:
        return self.loaded.profile.workflow_id

    def site(self, frame_id: str | None = None) -> WriteSite:
        """Where this attempt writes, for its telemetry rows (``frame_id``: the frame written, if any)."""
        return WriteSite(
            workflow_id=self.workflow_id,
            profile_version=self.loaded.profile.version,
            thread_id=self.thread.thread_id,
            turn_id=self.turn.turn_id,
            node_id=self.thread.target_node_id,
            frame_id=frame_id,
            branch="taken" if self.branch is not None else None,
        )

    def turn_record(self, status: TurnStatus, ended_ms: int, answer: _Answer, **outcome: Any) -> TurnRecord:
        return TurnRecord(
            turn_record_id=turn_record_id_for(
                self.workflow_id, self.thread.thread_id, self.turn.turn_id, self.number
            ),
            thread_id=self.thread.thread_id,
            turn_id=self.turn.turn_id,
            turn_seq=self.turn.seq,
            attempt=self.number,
            status=status,
            input_artifact_ids=tuple(self.snapshot.artifact_ids.values()),
            started_at_ms=self.started_ms,
            ended_at_ms=ended_ms,
            # A recorded answer taken instead of a call reached no provider.
            provider_called=answer.source != "recorded",
            request_digest=self.asked.digest,
            request=self.asked.request,
            # The answer's own artifact, or the output's when the answer is the output verbatim.
            response_artifact_id=outcome.get("output_artifact_id")
            if answer.is_output
            else (answer.response.artifact_id if answer.response else None),
            response_source=answer.source,
            branch=self.branch,
            segment=parallel_segment(self.loaded.profile, self.turn.turn_id),
            **outcome,
        )

    def prompt_link(self, created_ms: int) -> PromptLinkRecord:
        artifacts = self.snapshot.artifacts
        return PromptLinkRecord(
            prompt_link_id=prompt_link_id_for(
                self.workflow_id, self.thread.thread_id, self.turn.turn_id, self.number
            ),
            thread_id=self.thread.thread_id,
            turn_id=self.turn.turn_id,
            node_id=self.thread.target_node_id,
            frame_id=self.thread.target_frame_id,
            system_prompt_artifact_id=artifacts.get("system_prompt", (None,))[0],
            user_prompt_template_artifact_id=artifacts["prompt_template"][0],
            rendered_prompt_artifact_id=artifacts.get("rendered_prompt", (None,))[0],
            context_artifact_id=self.snapshot.artifact_ids.get(CONTEXT_REF),
            created_at_ms=created_ms,
        )

    def artifact_links(
        self, created_ms: int, answer: _Answer, output: ArtifactRef | None = None
    ) -> tuple[ArtifactLinkRecord, ...]:
        links = list(self.snapshot.artifacts.items())
        links += [("input", pair) for ref, pair in self.snapshot.inputs.items() if ref != CONTEXT_REF]
        if answer.response is not None and answer.source != "recorded":
            # A recorded answer is linked by the attempt that received it.
            links.append(("provider_response", (answer.response.artifact_id, answer.response.size)))
        if output is not None:
            links.append(("output", (output.artifact_id, output.size)))
        return tuple(
            ArtifactLinkRecord(
                artifact_link_id=artifact_link_id_for(
                    self.thread.thread_id, self.turn.turn_id, self.number, role, artifact_id
                ),
                artifact_id=artifact_id,
                thread_id=self.thread.thread_id,
                turn_id=self.turn.turn_id,
                attempt=self.number,
                role=role,
                size=size,
                created_at_ms=created_ms,
            )
            for role, (artifact_id, size) in links
        )

    def thread_update(self, status: str, ended_ms: int, error: tuple[str, str] | None = None) -> ThreadRecord:
        # The furthest turn reached: re-running an earlier turn (its output was lost from
        # the CAS) must not unsettle the completed turns after it (runtime/failure.py).
        progress = max(self.thread.last_turn_seq, self.turn.seq)
        thread = self.thread.model_copy(update={"last_turn_seq": progress})
        if error is not None:
            return failed_thread(
                thread, *error, at_ms=ended_ms, digest_only=self.loaded.redaction.hash_free_text
            )
        # A thread that goes on (or completes) no longer carries an earlier failure.
        return thread.model_copy(
            update={"status": status, "updated_at_ms": ended_ms, "error_code": None, "error_text": None}
        )

    def output(
        self, record: TurnRecord, provider_calls: int, size: int = 0, gate: GateResult | None = None
    ) -> TurnOutput:
        return TurnOutput(
            thread_id=self.thread.thread_id,
            turn_id=self.turn.turn_id,
            output_type=self.turn.output_type,
            target_key=self.target.key,
            status=record.status,
            attempt=self.number,
            artifact_id=record.output_artifact_id,
            artifact_size=size,
            input_artifact_ids=record.input_artifact_ids,
            gate_id=gate.gate_id if gate else self.turn.gate_id,
            gate_outcome=gate.outcome if gate else None,
            gate_reasons=gate.reasons if gate else (),
            gate_findings=gate.finding_dicts() if gate else (),
            provider_calls=provider_calls,
            error_code=record.error_code,
            error_text=record.error_text,
            branch="taken" if self.branch is not None else None,
            decision_digest=decision_digest(self.branch),
        )


def _record_decision(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    turn: Any,
    decision: Mapping[str, Any],
    latest: TurnRecord | None,
) -> None:
    """The telemetry row of a decision (`record_branch_decision`), once per decision recorded.

    A skip decided again to the same values keeps its record (`decision_already_recorded`),
    so it gets no second row.
    """
    if decision_already_recorded(thread, latest, decision):
        return
    site = WriteSite(
        workflow_id=loaded.profile.workflow_id,
        profile_version=loaded.profile.version,
        thread_id=thread.thread_id,
        turn_id=turn.turn_id,
        node_id=thread.target_node_id,
        frame_id=None,
        branch="taken" if decision.get("result") else "not_taken",
    )
    record_branch_decision(env, site, decision)


def _not_taken_output(thread: ThreadRecord, turn: Any, target: Target, record: TurnRecord) -> TurnOutput:
    """The output of a turn its branch skipped: no artifact, no call, ``BRANCH_NOT_TAKEN``."""
    return replace(
        TurnOutput.skipped(thread.thread_id, turn, target.key, BRANCH_NOT_TAKEN),
        attempt=record.attempt,
        branch="not_taken",
        decision_digest=decision_digest(record.branch),
    )


def _commit_failed(attempt: _Attempt, error: WfError, provider_calls: int, answer: _Answer) -> TurnOutput:
    """A provider error or unusable output: the attempt is recorded, the thread is failed."""
    ended = now_ms()
    # The records are a log sink: the message is scrubbed, and withheld if it repeats the
    # turn's prompt or inputs (a provider or parser quoting what it was given).
    snapshot = attempt.snapshot
    text = recorded_error_text(
        error.message,
        (snapshot.system_prompt, snapshot.user_prompt, *snapshot.texts.values()),
        digest_only=attempt.loaded.redaction.hash_free_text,
    )
    record = attempt.turn_record("failed", ended, answer, error_code=error.code, error_text=text)
    links = attempt.artifact_links(ended, answer)
    attempt.env.records.commit_turn(
        TurnCommit(
            thread=attempt.thread_update("failed", ended, (str(error.code), text)),
            turn=record,
            prompt_link=attempt.prompt_link(ended),
            artifact_links=links,
        )
    )
    record_artifact_links(attempt.env, attempt.site(), links, attempt.turn.output_type)
    return attempt.output(record, provider_calls)


def _commit_completed(
    attempt: _Attempt,
    output: ArtifactRef,
    gate: GateResult | None,
    response: ProviderResponse,
    provider_calls: int,
    answer: _Answer,
) -> TurnOutput:
    """An output was produced: record it with its gate verdict, and the frame if it is final."""
    loaded, thread, turn = attempt.loaded, attempt.thread, attempt.turn
    ended = now_ms()
    # A warn never stops; under mode: continue a fail is recorded but the thread goes on too.
    passed = not gate_stops_thread(loaded.profile.failure_policy, gate)
    is_final = turn.output_type == final_output_type(loaded)
    record = attempt.turn_record(
        "completed" if passed else "failed",
        ended,
        answer,
        output_artifact_id=output.artifact_id,
        error_code=None if passed else GATE_FAILED,
        error_text=None
        if passed
        else f"gate {gate.gate_id} of turn {turn.turn_id} failed: {', '.join(gate.reasons)}"[
            :ERROR_TEXT_LIMIT
        ],
    )
    gate_record = (
        GateRecord(
            gate_record_id=gate_record_id_for(
                attempt.workflow_id, thread.thread_id, turn.turn_id, attempt.number
            ),
            thread_id=thread.thread_id,
            turn_id=turn.turn_id,
            gate_id=gate.gate_id,
            attempt=attempt.number,
            outcome=gate.outcome,
            reasons=gate.reasons,
            evaluated_at_ms=ended,
            findings=gate.finding_dicts(),
            rules_digest=gate.rules_digest,
        )
        if gate
        else None
    )
    prompt_link = attempt.prompt_link(ended)
    frame = (
        _final_frame(attempt, prompt_link, output.artifact_id, response, ended)
        if is_final and passed
        else None
    )
    # A completed thread whose earlier turn ran again (its output was lost) stays completed:
    # its later turns stay settled (thread_update keeps the furthest turn reached).
    done = is_final or thread.status == "completed"
    thread_status = ("completed" if done else "running") if passed else "failed"
    thread_error = None if passed else (GATE_FAILED, record.error_text or GATE_FAILED)
    links = attempt.artifact_links(ended, answer, output)
    attempt.env.records.commit_turn(
        TurnCommit(
            thread=attempt.thread_update(thread_status, ended, thread_error),
            turn=record,
            gate=gate_record,
            prompt_link=prompt_link,
            artifact_links=links,
            frame=frame,
        )
    )
    # Telemetry after the commit: a row counts a write that the records hold.
    record_artifact_links(
        attempt.env, attempt.site(frame.frame_id if frame else None), links, attempt.turn.output_type
    )
    if frame is not None:
        record_frame_metadata(attempt.env, attempt.site(frame.frame_id), frame.metadata)
    log.info(
        "turn %s of thread %s attempt %d: %s, output %s, gate %s",
        turn.turn_id,
        thread.thread_id,
        attempt.number,
        record.status,
        output.artifact_id,
        gate.outcome if gate else "none",
    )
    return attempt.output(record, provider_calls, output.size, gate)


def _thread_context_id(env: RuntimeEnv, thread: ThreadRecord) -> str:
    context_id = recorded_context_id(env, thread.thread_id)
    if context_id is None:
        raise RunError(RUN_CONTEXT_MISSING, f"thread {thread.thread_id} has no recorded context snapshot")
    return context_id


def _final_frame(
    attempt: _Attempt, prompt_link: PromptLinkRecord, output_id: str, response: ProviderResponse, created: int
) -> FrameRecord:
    """The frame attached to the target node, its metadata passed through the one write boundary."""
    env, loaded, thread, snapshot = attempt.env, attempt.loaded, attempt.thread, attempt.snapshot
    profile = loaded.profile
    frame_type = frame_type_of(loaded)
    frame_id = frame_id_for(thread.target_node_id, frame_type, output_id)
    try:
        # Each domain writes the keys it owns (keys.yaml); the boundary refuses the whole
        # frame if one of them writes another's.
        metadata = env.boundary.validate(
            {
                "agent": {
                    "agent_id": profile.target_agent_id or f"agent.{profile.workflow_id}",
                    "provider": env.settings.provider,
                    "provider_type": response.provider_type,
                    "model": response.model,
                },
                "prompt_context": {
                    "prompt_digest": digest_text(snapshot.system_prompt + "\n" + snapshot.user_prompt),
                },
                "context": {
                    "context_digest": snapshot.artifact_ids.get(CONTEXT_REF)
                    or _thread_context_id(env, thread),
                },
                "workflow": {"prompt_link_id": prompt_link.prompt_link_id},
            },
            forbidden_texts=[snapshot.user_prompt, *snapshot.texts.values()],
        )
    except MetadataError as exc:
        record_rejection(env, attempt.site(frame_id), exc)
        raise
    return FrameRecord(
        frame_id=frame_id,
        node_id=thread.target_node_id,
        frame_type=frame_type,
        artifact_id=output_id,
        thread_id=thread.thread_id,
        metadata=metadata,
        created_at_ms=created,
    )
