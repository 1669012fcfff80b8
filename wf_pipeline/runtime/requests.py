"""What a turn attempt asked its provider, as a record: the request, its digest, its recorded answers.

A request is described by digests and ids only, never payload text:

- ``provider``, ``model``, ``options``: who answers, and a digest of the provider's options
  that change its output (``output_options``, e.g. an OpenAI-wire ``temperature``);
- ``output_type``, ``output_format``, ``max_output_bytes``: what is asked for;
- ``system_prompt``, ``prompt``: digests of the rendered prompts (canonical UTF-8);
- ``inputs``: input ref -> artifact id of each input (the context snapshot, earlier
  turns' outputs). Providers such as the offline one answer from the inputs rather than
  the prompt, so an input that changes is a request that changes, whatever a template shows.

The request digest is the canonical digest of those fields (`request_digest`). Two more
fields are kept to explain a difference, not hashed: ``template`` and ``system_template``,
the digests of the prompt templates the prompts were rendered from (a template's effect
on the request is its rendered prompt).

A turn attempt is recorded with its request and, when the provider answered, the answer
as a ``provider_response`` artifact (`wf_pipeline.metadata.records.TurnRecord`). A later
attempt whose request digest is one already answered can take that answer instead of a
call (`reusable_answer`), and a replay gives back each thread's answers in the order they
came (`recorded_answers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wf_pipeline.metadata.canonical import canonical_json, digest, digest_text
from wf_pipeline.metadata.records import TurnRecord
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.records import RecordStore

REQUEST_SCHEMA = "wf.request.v1"

#: The fields the request digest covers.
HASHED_FIELDS: tuple[str, ...] = (
    "schema",
    "provider",
    "model",
    "options",
    "output_type",
    "output_format",
    "max_output_bytes",
    "system_prompt",
    "prompt",
    "inputs",
)

#: The order a difference between two requests is explained in: causes before their effects
#: (a template before the prompt rendered from it, an input before the prompt that quotes it).
CAUSE_ORDER: tuple[str, ...] = (
    "template",
    "system_template",
    "inputs",
    "system_prompt",
    "prompt",
    "provider",
    "model",
    "options",
    "output_type",
    "output_format",
    "max_output_bytes",
    "schema",
)


def output_options(provider: object) -> dict[str, Any]:
    """The options of ``provider`` that change its output (its ``output_options``, else none).

    Args:
        provider: a `wf_pipeline.providers.Provider`.

    Returns:
        Option name -> value (JSON values); empty for a provider that declares none.
    """
    options = getattr(provider, "output_options", None)
    return dict(options) if options else {}


def options_digest(provider: object) -> str:
    """The digest of ``provider``'s output options: its own ``options_digest`` when it has one
    (a replay stands in with the digest it was recorded with), else of `output_options`."""
    recorded = getattr(provider, "options_digest", None)
    return str(recorded) if recorded else digest(canonical_json(output_options(provider)))


def build_request(
    provider: object,
    *,
    output_type: str,
    output_format: str,
    max_output_bytes: int | None,
    system_prompt: str,
    user_prompt: str,
    input_ids: Mapping[str, str],
    template_digest: str,
    system_template_digest: str | None,
) -> dict[str, Any]:
    """The request record of one turn attempt: digests and ids, no payload text.

    Args:
        provider: the provider asked (its ``provider_type``, ``model`` and `output_options`).
        output_type: the turn's output type.
        output_format: ``json`` or ``markdown``.
        max_output_bytes: the profile's output limit in bytes (None: none).
        system_prompt: the rendered system prompt ("" without one).
        user_prompt: the rendered user prompt.
        input_ids: input ref -> artifact id (``sha256:<hex>``) of each input.
        template_digest: digest of the user prompt template.
        system_template_digest: digest of the system prompt template, None without one.

    Returns:
        The request as a JSON object (see the module docstring). Raises nothing.
    """
    return {
        "schema": REQUEST_SCHEMA,
        "provider": str(getattr(provider, "provider_type", "")),
        "model": str(getattr(provider, "model", "")),
        "options": options_digest(provider),
        "output_type": output_type,
        "output_format": output_format,
        "max_output_bytes": max_output_bytes,
        "system_prompt": digest_text(system_prompt),
        "prompt": digest_text(user_prompt),
        "inputs": dict(sorted(input_ids.items())),
        "template": template_digest,
        "system_template": system_template_digest,
        # How the retry loop judged a bad output: a replay judges it the same way.
        "deterministic": bool(getattr(provider, "deterministic", False)),
    }


def request_digest(request: Mapping[str, Any]) -> str:
    """The canonical digest (``sha256:<hex>``) of a request's `HASHED_FIELDS`.

    Args:
        request: a request as `build_request` makes it (or as a turn record keeps it).

    Returns:
        The digest of the canonical JSON of the hashed fields; a field the request lacks
        counts as null. Raises nothing.
    """
    return digest(canonical_json({name: request.get(name) for name in HASHED_FIELDS}))


def differing_fields(expected: Mapping[str, Any] | None, actual: Mapping[str, Any] | None) -> list[str]:
    """The fields two requests differ in, causes first (`CAUSE_ORDER`); inputs by ref (``inputs.<ref>``).

    Args:
        expected: the request recorded originally (None when none was).
        actual: the request made now (None when none was).

    Returns:
        Field names in `CAUSE_ORDER`; ``["request"]`` when only one side has a request;
        empty when both agree. Raises nothing.
    """
    if expected is None or actual is None:
        return [] if expected is actual else ["request"]
    fields: list[str] = []
    for name in CAUSE_ORDER:
        if name == "inputs":
            before, after = dict(expected.get("inputs") or {}), dict(actual.get("inputs") or {})
            fields += [
                f"inputs.{ref}"
                for ref in sorted(set(before) | set(after))
                if before.get(ref) != after.get(ref)
            ]
        elif expected.get(name) != actual.get(name):
            fields.append(name)
    return fields


@dataclass(frozen=True)
class RecordedAnswer:
    """One answer a provider gave to a request, as recorded: its response artifact or its error.

    Attributes:
        thread_id: the thread whose attempt recorded it.
        turn_id: the turn.
        attempt: the attempt number (from 1).
        response_artifact_id: the ``provider_response`` artifact, None when the call failed.
        error_code: the failed call's catalogue code, None when a response came back.
        error_text: the failed call's message as recorded (figures, never payload text).
    """

    thread_id: str
    turn_id: str
    attempt: int
    response_artifact_id: str | None
    error_code: str | None
    error_text: str | None
    # True when the answer was the attempt's output verbatim: one object, of the output's class.
    is_output: bool = False

    @classmethod
    def of(cls, record: TurnRecord) -> RecordedAnswer:
        """The answer one turn record holds (see `is_answer`)."""
        return cls(
            thread_id=record.thread_id,
            turn_id=record.turn_id,
            attempt=record.attempt,
            is_output=record.response_artifact_id is not None
            and record.response_artifact_id == record.output_artifact_id,
            response_artifact_id=record.response_artifact_id,
            error_code=None if record.response_artifact_id else record.error_code,
            error_text=None if record.response_artifact_id else record.error_text,
        )


def response_class(answer: RecordedAnswer, output_type: str) -> str | None:
    """The artifact class a recorded answer is stored under: the turn's output class when the
    answer was the output verbatim (one object, not two), else ``provider_response``.

    Args:
        answer: the recorded answer.
        output_type: the output type of its turn.

    Returns:
        The class to read it with (encrypted objects are bound to their class). Raises nothing.
    """
    return class_of_link("output" if answer.is_output else "provider_response", output_type)


def is_answer(record: TurnRecord) -> bool:
    """Whether a turn record holds an answer to its request: a response, or a call that failed.

    An attempt that never reached a provider (interrupted before its call) holds none. An
    attempt that took an earlier answer (``response_source`` ``recorded``) holds that
    response: it is the answer its thread received.
    """
    if record.request_digest is None:
        return False
    return record.response_artifact_id is not None or (
        record.provider_called and record.error_code is not None
    )


def recorded_answers(
    records: RecordStore, digest_: str, *, thread_id: str | None = None
) -> list[RecordedAnswer]:
    """The answers recorded for request ``digest_``, in the order one thread received them.

    The thread is ``thread_id`` when it asked that request; otherwise the most recent
    thread that did (its latest answer is the newest). A replay gives these back one per
    attempt, so retries replay the same way.

    Args:
        records: the record store to read.
        digest_: the request digest (``sha256:<hex>``).
        thread_id: the thread being replayed, if any.

    Returns:
        The answers by attempt number; empty when no thread recorded that request.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    answers = [record for record in records.turns_for_request(digest_) if is_answer(record)]
    if not answers:
        return []
    chosen = thread_id if any(r.thread_id == thread_id for r in answers) else answers[-1].thread_id
    return [RecordedAnswer.of(r) for r in sorted(answers, key=lambda r: r.attempt) if r.thread_id == chosen]


def reusable_answer(records: RecordStore, digest_: str) -> RecordedAnswer | None:
    """The newest recorded response to request ``digest_`` whose attempt completed, if any.

    Only an answer that made its turn complete is reused: a reply that failed the output
    checks (size, shape) or a gate that stopped its thread would fail again, where a fresh
    call may not (a resume of a thread that failed at a gate asks the provider anew). The
    gate still runs on a reused answer, under the profile's rules of now.

    Args:
        records: the record store to read.
        digest_: the request digest.

    Returns:
        The answer, or None when no attempt recorded a usable response to that request.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    for record in reversed(records.turns_for_request(digest_)):
        if is_answer(record) and record.response_artifact_id and record.status == "completed":
            return RecordedAnswer.of(record)
    return None
