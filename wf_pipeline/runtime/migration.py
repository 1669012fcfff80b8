"""What re-running a workflow's threads under its current profile would change, turn by turn.

A thread pins the code version it started with (`wf_pipeline.runtime.pinning`). When the
profile's code version moved on, the thread's target is run again by a new thread, and each
turn of that run either asks a request already answered (its recorded response is taken,
no provider call: `wf_pipeline.runtime.requests.reusable_answer`) or asks a new one.

`plan_migration` estimates that from the records alone, reading and writing nothing else:
each turn's prompt is rendered again with the current profile from the thread's recorded
inputs (its context snapshot and its upstream turns' recorded outputs), its request is built
as a run would build it (`build_request`, with the runtime's provider), and the digest is
compared with the one the thread recorded. A turn is

- ``unchanged``: same request digest; ``answered`` when a recorded response to it is
  reusable, else it will call the provider (its earlier attempt failed);
- ``changed``: another digest (``fields`` say which request fields differ, causes first);
- ``downstream``: one of its inputs comes from a changed turn, so its input will change;
- ``new``: the thread recorded no request for it (it never ran, or ran before requests were
  recorded), or its inputs cannot be read back (a code in ``reason``).

The estimate assumes the tree is unchanged: a new thread whose context differs asks new
requests everywhere. Counting every ``downstream`` turn as changed makes it an upper bound:
a changed turn whose new answer equals its old one leaves the turns after it answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wf_pipeline.errors import RUN_CONTEXT_MISSING, RUN_INPUT_NOT_READY, RUN_UNKNOWN_TARGET, RunError, WfError
from wf_pipeline.metadata.payloads import CONTEXT_REF
from wf_pipeline.metadata.records import ThreadRecord, TurnRecord
from wf_pipeline.profiles import LoadedProfile, render_prompt
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.runtime.branches import skip_within_progress
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.requests import build_request, differing_fields, request_digest, reusable_answer
from wf_pipeline.runtime.targets import Target, resolve_target
from wf_pipeline.runtime.threads import recorded_context_id, target_frame_id
from wf_pipeline.runtime.turn import render_variables
from wf_pipeline.text.names import display_name

TurnChangeKind = Literal["unchanged", "changed", "downstream", "new"]


@dataclass(frozen=True)
class TurnChange:
    """One turn of a thread under the current profile.

    Attributes:
        turn_id: the turn (of the current profile).
        change: ``unchanged``, ``changed``, ``downstream`` or ``new`` (module docstring).
        answered: the run would take a recorded response (no provider call).
        fields: for ``changed``, the request fields that differ (`differing_fields`).
        reason: for ``new`` when the inputs could not be read, the error's code.
        recorded_digest: the request digest the thread recorded, if any.
        current_digest: the request digest under the current profile, if it could be built.
    """

    turn_id: str
    change: TurnChangeKind
    answered: bool = False
    fields: tuple[str, ...] = ()
    reason: str | None = None
    recorded_digest: str | None = None
    current_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object, its fields by name."""
        return {
            "turn_id": self.turn_id,
            "change": self.change,
            "answered": self.answered,
            "fields": list(self.fields),
            "reason": self.reason,
            "recorded_digest": self.recorded_digest,
            "current_digest": self.current_digest,
        }


@dataclass(frozen=True)
class ThreadMigration:
    """One thread on an older code version and what re-running its target would cost.

    Attributes:
        thread: the thread's record.
        target: its target (None when no target is registered under its key any more).
        pinned_code_version: the code version it started with.
        current_code_version: the workflow's code version now.
        turns: one `TurnChange` per turn of the current profile, in seq order.
    """

    thread: ThreadRecord
    target: Target | None
    pinned_code_version: str
    current_code_version: str
    turns: tuple[TurnChange, ...] = field(default=())

    @property
    def turns_changing(self) -> int:
        """Turns whose request changes (every kind but ``unchanged``)."""
        return sum(1 for turn in self.turns if turn.change != "unchanged")

    @property
    def provider_calls(self) -> int:
        """Turns that would call the provider (not answered from a recorded response)."""
        return sum(1 for turn in self.turns if not turn.answered)

    @property
    def answered(self) -> int:
        """Turns that would take a recorded response."""
        return sum(1 for turn in self.turns if turn.answered)


def pinned_code_version(thread: ThreadRecord) -> str:
    """The code version ``thread`` started with: its pinned one, else the one its frame id names.

    A thread recorded before pinning carries the code version in ``target_frame_id``
    (``<frame type>@<code version>``, `wf_pipeline.runtime.threads.target_frame_id`).
    """
    if thread.code_version is not None:
        return thread.code_version
    return thread.target_frame_id.rpartition("@")[2]


def is_outdated(thread: ThreadRecord, current: LoadedProfile) -> bool:
    """Whether ``thread`` started on another code version than ``current``'s.

    Pinned threads compare their ``code_version``; older ones their ``target_frame_id``.
    """
    if thread.code_version is not None:
        return thread.code_version != current.code_version
    return thread.target_frame_id != target_frame_id(current)


def outdated_threads(env: RuntimeEnv, current: LoadedProfile) -> list[ThreadRecord]:
    """The newest thread of each target of the workflow, when it is on an older code version.

    A target whose newest thread is on the current version is migrated already; older
    threads of a target are history, superseded by its newest.

    Args:
        env: the runtime (records read).
        current: the workflow's current profile.

    Returns:
        The threads, by target path then thread id.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    newest: dict[str, ThreadRecord] = {}
    for thread in env.records.list_threads(current.workflow_id):
        known = newest.get(thread.target_key)
        if known is None or (thread.created_at_ms, thread.thread_id) > (known.created_at_ms, known.thread_id):
            newest[thread.target_key] = thread
    chosen = [thread for thread in newest.values() if is_outdated(thread, current)]
    return sorted(chosen, key=lambda t: (t.target_path, t.thread_id))


def plan_migration(env: RuntimeEnv, current: LoadedProfile) -> list[ThreadMigration]:
    """Every outdated thread of the workflow (`outdated_threads`) with its turns' changes.

    Args:
        env: the runtime: records and CAS read (nothing written); its provider names the
            provider part of the requests, as a run would.
        current: the workflow's current profile.

    Returns:
        One `ThreadMigration` per outdated thread.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``. A turn whose inputs cannot be read back is
            ``new`` with the error's code, not an error.
    """
    migrations = []
    for thread in outdated_threads(env, current):
        try:
            target: Target | None = resolve_target(env.records, thread.target_key)
        except WfError:
            target = None
        migrations.append(
            ThreadMigration(
                thread=thread,
                target=target,
                pinned_code_version=pinned_code_version(thread),
                current_code_version=current.code_version,
                turns=tuple(_turn_changes(env, current, thread, target)),
            )
        )
    return migrations


def _turn_changes(
    env: RuntimeEnv, current: LoadedProfile, thread: ThreadRecord, target: Target | None
) -> list[TurnChange]:
    recorded = _latest_requests(env.records.turns_for_thread(thread.thread_id))
    latest = env.records.latest_turns(thread.thread_id)
    producers = {turn.output_type: turn for turn in current.profile.ordered_turns()}
    changed: set[str] = set()  # output types whose producer's request changes
    changes = []
    for turn in current.profile.ordered_turns():
        before = recorded.get(turn.turn_id)
        if any(ref != CONTEXT_REF and ref in changed for ref in turn.input_refs):
            change = TurnChange(turn.turn_id, "downstream", recorded_digest=_digest_of(before))
        elif before is None or before.request is None:
            change = TurnChange(turn.turn_id, "new")
        else:
            change = _compare(env, current, thread, target, turn, before, latest, producers)
        if change.change != "unchanged":
            changed.add(turn.output_type)
        changes.append(change)
    return changes


def _compare(
    env: RuntimeEnv,
    current: LoadedProfile,
    thread: ThreadRecord,
    target: Target | None,
    turn: Any,
    before: TurnRecord,
    latest: Mapping[str, TurnRecord],
    producers: Mapping[str, Any],
) -> TurnChange:
    try:
        request = _current_request(env, current, thread, target, turn, latest, producers)
    except WfError as exc:
        return TurnChange(turn.turn_id, "new", reason=exc.code, recorded_digest=before.request_digest)
    digest = request_digest(request)
    if digest != before.request_digest:
        return TurnChange(
            turn.turn_id,
            "changed",
            fields=tuple(differing_fields(before.request, request)),
            recorded_digest=before.request_digest,
            current_digest=digest,
        )
    return TurnChange(
        turn.turn_id,
        "unchanged",
        answered=reusable_answer(env.records, digest) is not None,
        recorded_digest=before.request_digest,
        current_digest=digest,
    )


def _current_request(
    env: RuntimeEnv,
    current: LoadedProfile,
    thread: ThreadRecord,
    target: Target | None,
    turn: Any,
    latest: Mapping[str, TurnRecord],
    producers: Mapping[str, Any],
) -> dict[str, Any]:
    """The request ``turn`` would make under ``current`` from the thread's recorded inputs.

    Raises the `WfError` of whatever cannot be read back (``RUN_CONTEXT_MISSING``,
    ``RUN_INPUT_NOT_READY``, ``RUN_UNKNOWN_TARGET``, ``CAS_*``, ``PROFILE_TEMPLATE_*``).
    """
    if target is None:
        raise RunError(RUN_UNKNOWN_TARGET, f"no target registered under key {thread.target_key!r}")
    input_ids: dict[str, str] = {}
    texts: dict[str, str] = {}
    for ref in turn.input_refs:
        if ref == CONTEXT_REF:
            artifact_id = recorded_context_id(env, thread.thread_id)
            if artifact_id is None:
                raise RunError(
                    RUN_CONTEXT_MISSING, f"thread {thread.thread_id} has no recorded context snapshot"
                )
            artifact_class = class_of_link("context", None)
        else:
            upstream = latest.get(producers[ref].turn_id)
            if skip_within_progress(thread, upstream):
                continue  # its branch was not taken: absent, as the runtime leaves it out
            if upstream is None or upstream.status != "completed" or upstream.output_artifact_id is None:
                raise RunError(RUN_INPUT_NOT_READY, f"thread {thread.thread_id} recorded no output {ref}")
            artifact_id = upstream.output_artifact_id
            artifact_class = class_of_link("output", ref)
        input_ids[ref] = artifact_id
        texts[ref] = env.cas.get_text(artifact_id, artifact_class=artifact_class)
    # Rendered as the runtime renders (`wf_pipeline.runtime.turn`): the same variables.
    target_name = target.root.name if target.path == "." else target.path.rsplit("/", 1)[-1]
    absent: dict[str, str | None] = {ref: None for ref in turn.input_refs if ref not in texts}
    variables = render_variables(
        current.workflow_id,
        turn.turn_id,
        display_name(target.path),
        display_name(target_name),
        texts | absent,
    )
    template = current.templates[turn.turn_id]
    system_template = current.system_prompts.get(turn.turn_id)
    return build_request(
        env.provider,
        output_type=turn.output_type,
        output_format=turn.output_format,
        max_output_bytes=current.profile.artifact_policy.max_output_bytes,
        system_prompt=render_prompt(system_template, variables) if system_template else "",
        user_prompt=render_prompt(template, variables),
        input_ids=input_ids,
        template_digest=template.digest,
        system_template_digest=system_template.digest if system_template else None,
    )


def _latest_requests(records: list[TurnRecord]) -> dict[str, TurnRecord]:
    """Turn id -> its latest attempt that recorded a request."""
    found: dict[str, TurnRecord] = {}
    for record in sorted(records, key=lambda r: r.attempt):
        if record.request_digest is not None:
            found[record.turn_id] = record
    return found


def _digest_of(record: TurnRecord | None) -> str | None:
    return record.request_digest if record is not None else None
