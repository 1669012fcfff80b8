"""Replays: re-execute a recorded thread in a scratch namespace and compare it, digest by digest.

A replay runs the thread's turns again through the same runtime (`run_turn`), with:

- the replay provider standing in for the provider that answered (its type, model,
  output options and determinism, read from the recorded requests), so every request
  that is unchanged gets its recorded answers back, in order, and nothing else reaches a
  model; or a live provider when the caller names one (to check a provider against what
  it said before);
- a scratch namespace: the thread's history starts empty in memory
  (`wf_pipeline.records.scratch.ScratchRecordStore`), everything else (its children's
  outputs, the tree's records) is read as recorded, and every artifact it puts stays in
  memory (`wf_pipeline.cas.scratch.ScratchArtifactStore`). Live heads, records, audit
  trail and artifacts are never written;
- the tree as it is now: the context is built again from the files, so a changed file
  shows as a changed context.

Each thread is replayed on its own, against its children as recorded, so a divergence
is reported where it arises, not again in every directory above it.

`compare_attempts` then sets each attempt of the replay beside the recorded one: the
rendered prompt (``prompt_render``), the context (``context_payload``), the response
(``provider_response``), the output (``output``), the gate verdict (``gate``), the
sequence of attempts and their codes (``attempts``), and the decision of a turn's ``when:``
(``branch``: taken or not taken, and the values it read). Each divergence names the first
differing input (`wf_pipeline.runtime.requests.CAUSE_ORDER`): a changed template, a file
changed in the tree, an earlier turn's output, the provider, or, when the request is the
same, the provider's answer or the gate's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from wf_pipeline.cas.scratch import ScratchArtifactStore
from wf_pipeline.errors import REPLAY_NOTHING_RECORDED, REPLAY_RESPONSE_MISSING, CasError, RunError, WfError
from wf_pipeline.metadata.canonical import parse_json
from wf_pipeline.metadata.payloads import CONTEXT_REF, ContextPayload
from wf_pipeline.metadata.records import GateRecord, ThreadRecord, TurnRecord
from wf_pipeline.profiles import LoadedProfile, turn_segments
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.providers import Provider
from wf_pipeline.providers.replay import ReplayAnswer, ReplayProvider
from wf_pipeline.records.scratch import ScratchRecordStore
from wf_pipeline.runtime.branches import decision_digest
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.failure import prepare_resume
from wf_pipeline.runtime.pinning import read_pinned_profile
from wf_pipeline.runtime.requests import differing_fields, recorded_answers, response_class
from wf_pipeline.runtime.targets import Target, target_depth
from wf_pipeline.runtime.threads import scan_workspace
from wf_pipeline.runtime.turn import run_turn
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.telemetry import DisabledTelemetryRecorder
from wf_pipeline.tree import TreeScan

log = product_logger(__name__)

#: The artifact classes and outcomes a verified replay compares, in report order.
COMPARED = ("branch", "context_payload", "prompt_render", "provider_response", "output", "gate", "attempts")


@dataclass(frozen=True)
class FirstDifference:
    """Why a replay's turn differs: the first input that changed, with its digests.

    Attributes:
        input: the request field (`wf_pipeline.runtime.requests.CAUSE_ORDER`, inputs as
            ``inputs.<ref>``), or ``response`` (same request, another answer),
            ``gate_rules`` (same output, the gate's declaration changed), ``gate``
            (same output and rules: the gate's code changed), ``request`` (one side has
            no recorded request), ``when`` (a turn's expression changed: digests of the
            decisions), ``branch_reads`` (the same expression read other values: field ->
            value on each side) or ``segment`` (the turn ran in another parallel segment).
        expected: the recorded digest or value, None when there is none.
        actual: the replay's digest or value, None when there is none.
        detail: ids and paths that say more (the files of a context that changed),
            never payload text.
    """

    input: str
    expected: Any = None
    actual: Any = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The difference as a JSON object."""
        return {"input": self.input, "expected": self.expected, "actual": self.actual, "detail": self.detail}


@dataclass(frozen=True)
class Divergence:
    """One artifact or outcome of a replayed turn that is not what was recorded.

    Attributes:
        thread_id: the thread.
        target_path: its directory, relative to the tree root.
        turn_id: the turn.
        attempt: the attempt number compared (from 1).
        artifact_class: one of `COMPARED`.
        expected: the recorded digest (or outcome), None when nothing was recorded.
        actual: the replay's digest (or outcome), None when the replay produced nothing.
        first_difference: why, as far as the records tell.
    """

    thread_id: str
    target_path: str
    turn_id: str
    attempt: int
    artifact_class: str
    expected: Any
    actual: Any
    first_difference: FirstDifference | None = None

    def to_json(self) -> dict[str, Any]:
        """The divergence as a JSON object (ids and digests only)."""
        return {
            "thread_id": self.thread_id,
            "target_path": self.target_path,
            "turn_id": self.turn_id,
            "attempt": self.attempt,
            "artifact_class": self.artifact_class,
            "expected": self.expected,
            "actual": self.actual,
            "first_difference": self.first_difference.to_json() if self.first_difference else None,
        }


@dataclass(frozen=True)
class ThreadReplay:
    """The replay of one thread.

    Attributes:
        thread_id: the replayed thread.
        target_path: its directory.
        status: the status the replay ended with (``completed``, ``failed``).
        error_code: why it failed, if it did.
        turns: turn id -> the replay's attempts of it, as the scratch records hold them.
        gates: turn id -> the replay's gate verdicts, by attempt.
        divergences: what differs from the records (empty when not verified or all equal).
        provider_calls: calls a live provider answered (0 for the replay provider).
        verified: whether the replay was compared with the records.
        unreplayable: ``CODE: message`` when the replay could not run at all (its tree is
            gone, a store failed); such a replay never matches.
    """

    thread_id: str
    target_path: str
    status: str
    error_code: str | None
    turns: Mapping[str, tuple[TurnRecord, ...]]
    gates: Mapping[str, tuple[GateRecord, ...]]
    divergences: tuple[Divergence, ...] = ()
    provider_calls: int = 0
    verified: bool = False
    unreplayable: str | None = None

    @property
    def matched(self) -> bool:
        """Whether the replay ran and nothing diverged (unverified: whether it completed)."""
        if self.unreplayable is not None:
            return False
        return not self.divergences and (self.verified or self.status == "completed")

    def digests(self) -> list[dict[str, Any]]:
        """Each replayed turn in seq order: ``turn_id``, ``attempts``, and its last attempt's
        ``request``, ``response``, ``output`` digests and ``gate`` outcome."""
        found: list[dict[str, Any]] = []
        for turn_id, attempts in self.turns.items():
            last = attempts[-1]
            gate = next((g for g in self.gates.get(turn_id, ()) if g.attempt == last.attempt), None)
            found.append(
                {
                    "turn_id": turn_id,
                    "attempts": len(attempts),
                    "request": last.request_digest,
                    "response": last.response_artifact_id,
                    "output": last.output_artifact_id,
                    "gate": gate.outcome if gate else None,
                }
            )
        return found

    def to_json(self) -> dict[str, Any]:
        """The replay as JSON: ids, status, the turns' digests (`digests`) and the divergences."""
        return {
            "thread_id": self.thread_id,
            "target_path": self.target_path,
            "status": self.status,
            "error_code": self.error_code,
            "matched": self.matched,
            "unreplayable": self.unreplayable,
            "provider_calls": self.provider_calls,
            "turns": self.digests(),
            "divergences": [d.to_json() for d in self.divergences],
        }


@dataclass
class _Scratch:
    records: ScratchRecordStore
    env: RuntimeEnv


def replay_provider_for(
    env: RuntimeEnv, thread_id: str, recorded: Sequence[TurnRecord]
) -> ReplayProvider | None:
    """The replay provider standing in for the provider that answered ``thread_id``.

    Args:
        env: the live runtime (records and CAS read).
        thread_id: the thread to replay.
        recorded: its recorded turn attempts.

    Returns:
        A `ReplayProvider` answering from the live records (this thread's answers first),
        or None when no attempt of the thread recorded its request (recorded before
        requests were).

    Raises nothing itself; its ``complete`` raises ``REPLAY_RESPONSE_MISSING``.
    """
    first = next((r for r in recorded if r.request), None)
    if first is None or first.request is None:
        return None
    request = first.request

    def answers(provider_request: Any) -> list[ReplayAnswer]:
        found: list[ReplayAnswer] = []
        for answer in recorded_answers(env.records, provider_request.request_digest, thread_id=thread_id):
            if answer.response_artifact_id is None:
                found.append(
                    ReplayAnswer(text=None, error_code=answer.error_code, error_text=answer.error_text)
                )
                continue
            try:
                text = env.cas.get_text(
                    answer.response_artifact_id,
                    artifact_class=response_class(answer, provider_request.output_type),
                )
            except CasError as exc:
                # Expired, shredded, gone or corrupt: the replay has no answer from here on,
                # and says which and why.
                log.warning("%s: recorded response %s is unreadable", exc.code, answer.response_artifact_id)
                found.append(
                    ReplayAnswer(
                        text=None,
                        error_code=REPLAY_RESPONSE_MISSING,
                        error_text=f"the recorded response {answer.response_artifact_id} is unreadable ({exc.code})",
                    )
                )
                break
            found.append(ReplayAnswer(text=text))
        return found

    return ReplayProvider(
        str(request.get("provider", "")),
        str(request.get("model", "")),
        answers,
        options_digest=request.get("options"),
        deterministic=bool(request.get("deterministic", False)),
    )


def _scratch_env(
    env: RuntimeEnv,
    thread_id: str,
    provider: Provider,
    *,
    live_provider: bool,
    children: LoadedProfile | None,
) -> _Scratch:
    records = ScratchRecordStore(env.records, [thread_id])
    settings = env.settings.model_copy(update={"reuse_responses": False}) if live_provider else env.settings
    scratch = replace(
        env,
        settings=settings,
        records=records,
        cas=ScratchArtifactStore(env.cas),
        provider=provider,
        telemetry=DisabledTelemetryRecorder(),
        owns_provider=False,
        children_profile=children,
        # Shared with the live env: the ids of completed threads are the same in both, and a
        # tree's replays then cost each parent its children, not its whole subtree.
        completed_thread_ids=env.completed_thread_ids,
        warned=set(),
    )
    return _Scratch(records=records, env=scratch)


def replay_thread(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    target: Target,
    scan: TreeScan,
    *,
    provider: Provider | None = None,
    verify: bool = True,
    pinned: bool = False,
) -> ThreadReplay:
    """Replay ``thread`` in a scratch namespace, and with ``verify`` compare it with its records.

    Args:
        env: the live runtime (read only: nothing is written to its records or CAS).
        loaded: the profile to replay with (the one now loaded: a changed template shows).
        thread: the recorded thread.
        target: its target directory in ``scan``.
        scan: the tree as it is now.
        provider: a live provider to ask instead of the recorded answers; None: the
            replay provider (`replay_provider_for`).
        verify: compare every attempt with the recorded one (`compare_attempts`).
        pinned: replay with the profile the thread pinned when it started
            (`wf_pipeline.runtime.pinning`) instead of ``loaded``: the recorded retry
            policies, templates and thresholds; ``loaded`` for a thread that pinned none.

    Returns:
        The `ThreadReplay`. A thread with no recorded request is reported with one
        ``attempts`` divergence whose first difference is ``request``.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE`` reading the live records.
        CasError: ``CAS_BACKEND_ERROR`` reading the live CAS; ``CAS_NOT_FOUND`` for a
            pinned profile snapshot that is gone.
        ProfileError: ``PROFILE_SNAPSHOT_INVALID`` for a pinned snapshot that does not
            rebuild its code version.
    """
    pinned_profile = read_pinned_profile(env, thread)
    if pinned and pinned_profile is None:
        return unreplayable(
            thread,
            RunError(
                REPLAY_NOTHING_RECORDED,
                f"thread {thread.thread_id} pinned no profile (it started before threads did): "
                "replay it without --pinned",
                thread_id=thread.thread_id,
            ),
        )
    if pinned_profile is not None and pinned:
        loaded = pinned_profile
    recorded = env.records.turns_for_thread(thread.thread_id)
    live_provider = provider is not None
    chosen = provider or replay_provider_for(env, thread.thread_id, recorded)
    if chosen is None:
        return _unreplayable(thread, recorded)
    # The children as the thread read them: their threads under its pinned code version.
    scratch = _scratch_env(
        env, thread.thread_id, chosen, live_provider=live_provider, children=pinned_profile
    )
    node = next((n for n in scan.nodes if n.path == target.path), None)
    start = thread.model_copy(
        update={
            "status": "pending",
            "last_turn_seq": 0,
            "error_code": None,
            "error_text": None,
            # The tree as it is now: a changed file gives a new context, and the replay says so.
            "target_node_id": node.node_id if node is not None else thread.target_node_id,
        }
    )
    scratch.records.save_thread(start)
    status, error_code, calls = "completed", None, 0
    recorded_attempts = Counter(record.turn_id for record in recorded)

    def replay_one(turn: Any) -> Any:
        # Attempts past one invocation's budget came from a resume only if the retry policy is
        # the one the thread ran with; under another policy they are a divergence to report.
        same_policy = pinned_profile is None or _same_retry_policy(loaded, pinned_profile, turn.turn_id)
        budget = recorded_attempts if same_policy else Counter()
        try:
            return _replay_turn(scratch, loaded, thread.thread_id, target, turn.turn_id, scan, budget)
        except WfError as exc:
            log.warning(
                "%s: replay of turn %s of thread %s stopped", exc.code, turn.turn_id, thread.thread_id
            )
            return exc

    # Segment by segment, as the thread ran: the turns of a parallel segment concurrently
    # (`wf_pipeline.profiles.turn_segments`), each sibling to its end even when another fails.
    for segment in turn_segments(loaded.profile):
        if len(segment) == 1:
            outs = [replay_one(segment[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(segment), thread_name_prefix="wf-replay") as pool:
                outs = list(pool.map(replay_one, segment))
        for out in outs:
            if isinstance(out, WfError):
                if status == "completed":
                    status, error_code = "failed", out.code
                continue
            calls += out.provider_calls
            if out.status != "completed" and not out.not_taken and status == "completed":
                status, error_code = "failed", out.error_code
        if status != "completed":
            break
    turns = _by_turn(scratch.records.scratch.turns_for_thread(thread.thread_id))
    gates = _gates_by_turn(scratch.records.scratch.gates_for_thread(thread.thread_id))
    divergences: tuple[Divergence, ...] = ()
    if verify:
        divergences = tuple(
            compare_attempts(
                env,
                scratch.env,
                loaded,
                thread,
                recorded,
                env.records.gates_for_thread(thread.thread_id),
                turns,
                gates,
            )
        )
    return ThreadReplay(
        thread_id=thread.thread_id,
        target_path=thread.target_path,
        status=status,
        error_code=error_code,
        turns=turns,
        gates=gates,
        divergences=divergences,
        provider_calls=calls,
        verified=verify,
    )


def _same_retry_policy(loaded: LoadedProfile, pinned: LoadedProfile, turn_id: str) -> bool:
    try:
        return loaded.retry_policy(turn_id).to_json() == pinned.retry_policy(turn_id).to_json()
    except KeyError:  # the turn is new in the profile replayed
        return False


def _replay_turn(
    scratch: _Scratch,
    loaded: LoadedProfile,
    thread_id: str,
    target: Target,
    turn_id: str,
    scan: TreeScan,
    recorded_attempts: Mapping[str, int],
) -> Any:
    """Run one turn in the scratch namespace as often as the thread's records show it was run.

    A turn that failed and was resumed (``wf resume``, a repair) holds attempts beyond one
    invocation's retry budget: each later invocation is replayed the way a resume makes it,
    after `prepare_resume`, so the recorded answers are given back in the same order.
    """
    while True:
        current = scratch.records.get_thread(thread_id)
        out = run_turn(scratch.env, loaded, current, target, turn_id, scan)
        made = len([r for r in scratch.records.scratch.turns_for_thread(thread_id) if r.turn_id == turn_id])
        if (
            out.status == "completed"
            or out.not_taken
            or made >= recorded_attempts.get(turn_id, 0)
            or out.attempt == 0
        ):
            return out
        prepare_resume(scratch.env, loaded, scratch.records.get_thread(thread_id) or current)


#: Thread statuses a replay compares with: a thread still pending or running is not finished.
FINISHED = ("completed", "failed", "aborted")


def latest_threads(env: RuntimeEnv, workflow_id: str) -> dict[str, ThreadRecord]:
    """Target key -> the most recently updated finished thread of ``workflow_id`` there: what a replay of the target replays.

    A thread still ``pending`` or ``running`` (a run is at work on it) is left out: its
    records are not complete, so a comparison would report what is still to come.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    latest: dict[str, ThreadRecord] = {}
    for thread in env.records.list_threads(workflow_id):
        if thread.status not in FINISHED:
            continue
        known = latest.get(thread.target_key)
        if known is None or (thread.updated_at_ms, thread.thread_id) > (known.updated_at_ms, known.thread_id):
            latest[thread.target_key] = thread
    return latest


def replay_targets(
    env: RuntimeEnv,
    loaded: LoadedProfile,
    targets: Sequence[Target],
    *,
    verify: bool = True,
    pinned: bool = False,
) -> dict[str, ThreadReplay | None]:
    """Replay the latest thread of each target (`latest_threads`), deepest first; one scan per tree.

    Args:
        env: the live runtime (read only).
        loaded: the profile.
        targets: the targets (partitions) to replay.
        verify: compare each replay with its records.
        pinned: replay each thread with its pinned profile (`replay_thread`).

    Returns:
        Target key -> its `ThreadReplay`, or None when the target has no recorded thread.

    Raises:
        TreeError: a tree root that cannot be scanned (``TREE_PATH_MISSING``...).
        RecordError, CasError: reading the live stores.
    """
    latest = latest_threads(env, loaded.workflow_id)
    scans: dict[Any, TreeScan | WfError] = {}
    for root in dict.fromkeys(t.root for t in targets):
        try:
            scans[root] = scan_workspace(env, loaded, root)
        except WfError as exc:  # a tree moved or deleted: its targets fail, the others replay
            scans[root] = exc
    found: dict[str, ThreadReplay | None] = {}
    for target in sorted(targets, key=lambda t: (-target_depth(t), t.key)):
        thread = latest.get(target.key)
        scan = scans[target.root]
        if thread is None:
            found[target.key] = None
        elif isinstance(scan, WfError):
            found[target.key] = unreplayable(thread, scan)
        else:
            try:
                found[target.key] = replay_thread(
                    env, loaded, thread, target, scan, verify=verify, pinned=pinned
                )
            except WfError as exc:
                found[target.key] = unreplayable(thread, exc)
    return found


def unreplayable(thread: ThreadRecord, error: WfError) -> ThreadReplay:
    """The replay of a thread that could not run (its tree is gone, a store failed): failed, with the code.

    Args:
        thread: the recorded thread.
        error: why it could not be replayed.

    Returns:
        A `ThreadReplay` with ``status`` ``failed``, ``error_code`` the error's code and
        ``unreplayable`` its message (figures, never payload); it never matches.
    """
    return ThreadReplay(
        thread_id=thread.thread_id,
        target_path=thread.target_path,
        status="failed",
        error_code=error.code,
        turns={},
        gates={},
        verified=True,
        unreplayable=f"{error.code}: {error.message}",
    )


def _unreplayable(thread: ThreadRecord, recorded: Sequence[TurnRecord]) -> ThreadReplay:
    first = recorded[0] if recorded else None
    divergence = Divergence(
        thread_id=thread.thread_id,
        target_path=thread.target_path,
        turn_id=first.turn_id if first else "",
        attempt=first.attempt if first else 0,
        artifact_class="attempts",
        expected=None,
        actual=None,
        first_difference=FirstDifference("request", detail="no attempt of this thread recorded its request"),
    )
    return ThreadReplay(
        thread_id=thread.thread_id,
        target_path=thread.target_path,
        status="failed",
        error_code=None,
        turns={},
        gates={},
        divergences=(divergence,),
        verified=True,
    )


def _by_turn(records: Sequence[TurnRecord]) -> dict[str, tuple[TurnRecord, ...]]:
    found: dict[str, list[TurnRecord]] = {}
    for record in sorted(records, key=lambda r: (r.turn_seq, r.attempt)):
        found.setdefault(record.turn_id, []).append(record)
    return {turn_id: tuple(attempts) for turn_id, attempts in found.items()}


def _gates_by_turn(records: Sequence[GateRecord]) -> dict[str, tuple[GateRecord, ...]]:
    found: dict[str, list[GateRecord]] = {}
    for record in sorted(records, key=lambda g: g.attempt):
        found.setdefault(record.turn_id, []).append(record)
    return {turn_id: tuple(verdicts) for turn_id, verdicts in found.items()}


def compare_attempts(
    live: RuntimeEnv,
    scratch: RuntimeEnv,
    loaded: LoadedProfile,
    thread: ThreadRecord,
    recorded: Sequence[TurnRecord],
    recorded_gates: Sequence[GateRecord],
    replayed: Mapping[str, Sequence[TurnRecord]],
    replayed_gates: Mapping[str, Sequence[GateRecord]],
) -> list[Divergence]:
    """Every divergence between a thread's recorded attempts and its replay's, turn by turn.

    Attempt n of a turn is set beside attempt n of the replay: their context, rendered
    prompts (user and system), response and output digests, their outcomes (status and
    error code), and the verdict of the gate on the last one. A turn the replay did not
    reach, or an attempt only one side made, is an ``attempts`` divergence. Each
    divergence gets the first difference that explains its own class (`_cause`).

    Args:
        live: the live runtime (the recorded artifacts are read from it).
        scratch: the replay's runtime (its artifacts are read from it).
        loaded: the profile replayed.
        thread: the recorded thread.
        recorded: its recorded attempts.
        recorded_gates: its recorded gate verdicts.
        replayed: turn id -> the replay's attempts.
        replayed_gates: turn id -> the replay's gate verdicts.

    Returns:
        The divergences in turn order, then attempt, then `COMPARED` order.

    Raises nothing: an artifact that cannot be read to explain a context difference is
    explained by its digests alone.
    """
    expected_turns = _by_turn(recorded)
    expected_gates = _gates_by_turn(recorded_gates)
    found: list[Divergence] = []
    for turn in loaded.profile.ordered_turns():
        expected = expected_turns.get(turn.turn_id, ())
        actual = tuple(replayed.get(turn.turn_id, ()))
        if not expected and not actual:
            continue
        pair = _Pair(
            live,
            scratch,
            thread,
            turn,
            expected_gates.get(turn.turn_id, ()),
            replayed_gates.get(turn.turn_id, ()),
        )
        for index in range(max(len(expected), len(actual))):
            before = expected[index] if index < len(expected) else None
            after = actual[index] if index < len(actual) else None
            found += pair.attempt_divergences(index + 1, before, after)
        found += pair.gate_divergences(expected, actual)
    return found


@dataclass(frozen=True)
class _Pair:
    """One turn of a thread, recorded and replayed: what its divergences are compared with."""

    live: RuntimeEnv
    scratch: RuntimeEnv
    thread: ThreadRecord
    turn: Any
    expected_gates: Sequence[GateRecord]
    actual_gates: Sequence[GateRecord]

    def divergence(
        self, attempt: int, artifact_class: str, expected: Any, actual: Any, why: FirstDifference | None
    ) -> Divergence:
        return Divergence(
            self.thread.thread_id,
            self.thread.target_path,
            self.turn.turn_id,
            attempt,
            artifact_class,
            expected,
            actual,
            why,
        )

    def attempt_divergences(
        self, attempt: int, before: TurnRecord | None, after: TurnRecord | None
    ) -> list[Divergence]:
        if before is None or after is None:
            outcome = _outcome(before), _outcome(after)
            why = FirstDifference("attempts", *outcome, self._missing_attempt(before, after))
            return [self.divergence(attempt, "attempts", *outcome, why)]
        found = self._branch_divergence(attempt, before, after)
        old, new = before.request or {}, after.request or {}
        compared = (
            (
                "context_payload",
                "inputs.context",
                _inputs(old).get(CONTEXT_REF),
                _inputs(new).get(CONTEXT_REF),
            ),
            ("prompt_render", "system_prompt", old.get("system_prompt"), new.get("system_prompt")),
            ("prompt_render", "prompt", old.get("prompt"), new.get("prompt")),
            ("provider_response", "response", before.response_artifact_id, after.response_artifact_id),
            ("output", "output", before.output_artifact_id, after.output_artifact_id),
            ("attempts", "outcome", _outcome(before), _outcome(after)),
        )
        found += [
            self.divergence(attempt, artifact_class, expected, actual, self._cause(kind, before, after))
            for artifact_class, kind, expected, actual in compared
            if expected != actual
        ]
        if before.segment is not None and before.segment != after.segment:
            # The turn ran in parallel with other turns, and the replay ran it otherwise.
            why = FirstDifference(
                "segment", before.segment, after.segment, "the turn ran in another parallel segment"
            )
            found.append(self.divergence(attempt, "attempts", before.segment, after.segment, why))
        return found

    def _branch_divergence(self, attempt: int, before: TurnRecord, after: TurnRecord) -> list[Divergence]:
        """A ``branch`` divergence when the turn's ``when:`` decided otherwise, or read other values.

        Expected and actual are ``taken``/``not_taken`` (None: no decision recorded); the first
        difference names the fields whose values differ (values are numbers, booleans, enums
        or digests: `wf_pipeline.profiles.expressions.Decision`), or the expression itself.
        """
        old, new = before.branch, after.branch
        if old == new:
            return []
        expected, actual = _branch_taken(old), _branch_taken(new)
        if old is None or new is None or old.get("expression") != new.get("expression"):
            why = FirstDifference(
                "when",
                decision_digest(old),
                decision_digest(new),
                "the turn's when: expression changed (or one side has none)",
            )
        else:
            reads_old, reads_new = old.get("reads", {}), new.get("reads", {})
            changed = sorted(
                name for name in set(reads_old) | set(reads_new) if reads_old.get(name) != reads_new.get(name)
            )
            why = FirstDifference(
                "branch_reads",
                {name: reads_old.get(name) for name in changed},
                {name: reads_new.get(name) for name in changed},
                f"fields read differ: {', '.join(changed)}",
            )
        return [self.divergence(attempt, "branch", expected, actual, why)]

    def _missing_attempt(self, before: TurnRecord | None, after: TurnRecord | None) -> str:
        if after is None and before is not None:
            return "the replay made fewer attempts (an earlier turn or attempt ended otherwise)"
        return "the replay made an attempt the records do not hold"

    def _cause(self, kind: str, before: TurnRecord, after: TurnRecord) -> FirstDifference | None:
        """The first difference that explains a divergence of ``kind`` (`CAUSE_ORDER`, then answers, then gates)."""
        fields = differing_fields(before.request, after.request)
        if kind == "inputs.context":
            fields = [name for name in fields if name == "inputs.context"]
        elif kind == "system_prompt":
            fields = [
                name
                for name in fields
                if name in ("system_template", "system_prompt") or name.startswith("inputs.")
            ]
        elif kind == "prompt":
            fields = [name for name in fields if name not in ("system_template", "system_prompt")]
        if fields:
            return self._request_cause(fields[0], before, after)
        if before.response_artifact_id != after.response_artifact_id:
            if after.error_code == REPLAY_RESPONSE_MISSING:
                return FirstDifference("response", before.response_artifact_id, None, after.error_text or "")
            return FirstDifference(
                "response",
                before.response_artifact_id,
                after.response_artifact_id,
                "same request, another answer",
            )
        if before.error_code != after.error_code:
            old_gate = next((g for g in self.expected_gates if g.attempt == before.attempt), None)
            new_gate = next((g for g in self.actual_gates if g.attempt == after.attempt), None)
            if old_gate is not None and new_gate is not None:
                return _gate_cause(old_gate, new_gate)
            return FirstDifference(
                "response", before.error_code, after.error_code, "same answer, another outcome"
            )
        return None

    def _request_cause(self, name: str, before: TurnRecord, after: TurnRecord) -> FirstDifference:
        old, new = before.request or {}, after.request or {}
        if name == "request":
            return FirstDifference(
                "request", before.request_digest, after.request_digest, "one side recorded no request"
            )
        if name.startswith("inputs."):
            ref = name.split(".", 1)[1]
            expected, actual = _inputs(old).get(ref), _inputs(new).get(ref)
            if ref == CONTEXT_REF:
                return FirstDifference(
                    name, expected, actual, _context_detail(self.live, self.scratch, expected, actual)
                )
            return FirstDifference(name, expected, actual, f"input {ref} (an earlier turn's output) changed")
        if name in ("template", "system_template"):
            ref = (
                self.turn.prompt_ref if name == "template" else getattr(self.turn, "system_prompt_ref", None)
            )
            return FirstDifference(
                name,
                old.get(name),
                new.get(name),
                f"{name.replace('_', ' ')} {ref} of turn {self.turn.turn_id} changed",
            )
        return FirstDifference(name, old.get(name), new.get(name))

    def gate_divergences(
        self, expected: Sequence[TurnRecord], actual: Sequence[TurnRecord]
    ) -> list[Divergence]:
        before = _last_gate(expected, self.expected_gates)
        after = _last_gate(actual, self.actual_gates)
        verdict = _verdict(before), _verdict(after)
        if verdict[0] == verdict[1]:
            return []
        attempt = (actual or expected)[-1].attempt
        same_output = (
            bool(expected and actual) and expected[-1].output_artifact_id == actual[-1].output_artifact_id
        )
        if not same_output:
            why = FirstDifference(
                "output",
                expected[-1].output_artifact_id if expected else None,
                actual[-1].output_artifact_id if actual else None,
            )
        elif before is not None and after is not None:
            why = _gate_cause(before, after)
        else:
            why = FirstDifference("gate", *verdict)
        return [self.divergence(attempt, "gate", *verdict, why)]


def _inputs(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return request.get("inputs") or {}


def _gate_cause(before: GateRecord, after: GateRecord) -> FirstDifference:
    """Why one output got two verdicts: the gate's declaration changed, else its evaluator did."""
    if before.rules_digest != after.rules_digest:
        return FirstDifference("gate_rules", before.rules_digest, after.rules_digest, f"gate {after.gate_id}")
    return FirstDifference(
        "gate", _verdict(before), _verdict(after), "same output and rules: the gate's evaluator changed"
    )


def _branch_taken(branch: Mapping[str, Any] | None) -> str | None:
    # A recorded decision as compared: taken or not_taken; None for no decision.
    if branch is None:
        return None
    return "taken" if branch.get("result") else "not_taken"


def _outcome(record: TurnRecord | None) -> str | None:
    # An attempt's outcome as compared: its status and error code.
    if record is None:
        return None
    return record.status if record.error_code is None else f"{record.status}:{record.error_code}"


def _last_gate(attempts: Sequence[TurnRecord], gates: Sequence[GateRecord]) -> GateRecord | None:
    if not attempts:
        return None
    last = attempts[-1].attempt
    return next((g for g in gates if g.attempt == last), None)


def _verdict(gate: GateRecord | None) -> str | None:
    if gate is None:
        return None
    return gate.outcome if not gate.reasons else f"{gate.outcome}:{','.join(gate.reasons)}"


def _context_detail(live: RuntimeEnv, scratch: RuntimeEnv, expected: str | None, actual: str | None) -> str:
    """The files and child frames two context snapshots differ in, by path; digests only when unreadable."""
    context_class = class_of_link("context", None)
    try:
        old = ContextPayload.model_validate(
            parse_json(live.cas.get_text(str(expected), artifact_class=context_class))
        )
        new = ContextPayload.model_validate(
            parse_json(scratch.cas.get_text(str(actual), artifact_class=context_class))
        )
    except (WfError, ValueError):
        return "context changed (a snapshot is no longer readable: compared by digest)"
    changes = _changed_paths(_texts(old), _texts(new))
    if not changes and old.target != new.target:
        return (
            f"the directory's node id changed ({old.target.node_id} -> {new.target.node_id}): "
            "something below it changed"
        )
    if not changes:
        return "context changed outside its files and child frames (sizes or omissions)"
    shown = ", ".join(changes[:10]) + (f" and {len(changes) - 10} more" if len(changes) > 10 else "")
    return f"the tree changed: {shown}"


def _texts(payload: ContextPayload) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {f.path: ("file", (f.size, f.text)) for f in payload.files}
    found.update({c.path: ("child frame", c.head_frame) for c in payload.children})
    return found


def _changed_paths(old: Mapping[str, tuple[str, Any]], new: Mapping[str, tuple[str, Any]]) -> list[str]:
    changes = []
    for path in sorted(set(old) | set(new)):
        if path not in new:
            changes.append(f"{old[path][0]} {path} removed")
        elif path not in old:
            changes.append(f"{new[path][0]} {path} added")
        elif old[path] != new[path]:
            changes.append(f"{new[path][0]} {path} changed")
    return changes
