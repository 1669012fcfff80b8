"""The replay provider: answers from recorded responses by request digest, never from a model.

It stands in for the provider that answered originally: it reports that provider's
``provider_type``, ``model`` and ``output_options``, so the requests a replay makes have
the digests the original ones had (`wf_pipeline.runtime.requests`). Each request digest
gets its recorded answers back one per call, in the order they were received: a call that
failed originally fails again with the same code (so the retry loop decides the same way),
a response comes back as the same bytes. A request with no recorded answer left is
``REPLAY_RESPONSE_MISSING``, naming the turn and the digest; it never falls through to a
model.

The answers come from a function the runtime hands in (`ReplayProvider.answers`): the
provider domain reads no record store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wf_pipeline.errors import (
    CATALOGUE,
    PROVIDER_CONFIG_INVALID,
    REPLAY_RESPONSE_MISSING,
    ProviderError,
    WfError,
)
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider

PROVIDER_NAME = "replay"


@dataclass(frozen=True)
class ReplayAnswer:
    """One recorded answer as the replay gives it back: response text, or the failed call's code.

    Attributes:
        text: the response text, None for a failed call.
        error_code: the failed call's catalogue code, None for a response.
        error_text: the failed call's recorded message.
    """

    text: str | None
    error_code: str | None = None
    error_text: str | None = None


#: Request digest -> the recorded answers to it, in the order they were received.
AnswerSource = Callable[[ProviderRequest], Sequence[ReplayAnswer]]


class ReplayProvider:
    """A `wf_pipeline.providers.Provider` that replays recorded answers (see the module docstring).

    Args:
        provider_type: the original provider's type.
        model: the original provider's model.
        answers: ``request -> its recorded answers`` in order (looked up by
            ``request.request_digest``); called once per digest.
        output_options: the original provider's output-changing options.
        options_digest: the digest of those options as a request recorded them, when the
            options themselves are not known (`wf_pipeline.runtime.requests.options_digest`).
        deterministic: whether the original provider declared itself deterministic: the
            retry loop then judges a replayed bad output as it judged the original one.

    ``complete`` raises ProviderError ``REPLAY_RESPONSE_MISSING`` when no answer is left,
    or the recorded code of a call that failed.
    """

    # Marks a provider that re-plays answers: no calls to count, no waits between attempts.
    replays = True

    def __init__(
        self,
        provider_type: str,
        model: str,
        answers: AnswerSource,
        output_options: Mapping[str, Any] | None = None,
        *,
        options_digest: str | None = None,
        deterministic: bool = False,
    ) -> None:
        self.deterministic = deterministic
        # The recorded digest of the original's output options, when only that is known.
        self.options_digest = options_digest
        self.provider_type = provider_type
        self.model = model
        self.output_options = dict(output_options or {})
        self._answers = answers
        self._queues: dict[str, list[ReplayAnswer]] = {}
        self._lock = threading.Lock()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """The next recorded answer to ``request.request_digest``.

        Returns:
            The recorded response as a `ProviderResponse` of the original type and model.

        Raises:
            ProviderError: ``REPLAY_RESPONSE_MISSING`` (figures: turn, thread, request digest)
                when none is left; a recorded failure's own code, with its recorded message.
        """
        key = request.request_digest
        with self._lock:
            if key not in self._queues:
                self._queues[key] = list(self._answers(request))
            queue = self._queues[key]
            answer = queue.pop(0) if queue else None
        if answer is None:
            raise ProviderError(
                REPLAY_RESPONSE_MISSING,
                f"no recorded answer left for request {key or '(no digest)'} of turn {request.turn_id} "
                f"of thread {request.thread_id}",
                turn_id=request.turn_id,
                thread_id=request.thread_id,
                request_digest=key,
            )
        if answer.text is None:
            raise replayed_failure(answer, request)
        return ProviderResponse(text=answer.text, provider_type=self.provider_type, model=self.model)


def replayed_failure(answer: ReplayAnswer, request: ProviderRequest) -> WfError:
    """The error a recorded failed call replays as: its own code, class and message.

    A code no longer in the catalogue replays as a ProviderError with that code, not retryable.

    Args:
        answer: the recorded failure (``error_code`` set).
        request: the request being answered (its ids go into the details).

    Returns:
        The error to raise. Raises nothing.
    """
    code = str(answer.error_code)
    entry = CATALOGUE.get(code)
    error_class = entry.error_class if entry is not None else ProviderError
    message = answer.error_text or f"recorded failure of turn {request.turn_id}"
    return error_class(code, message, turn_id=request.turn_id, replayed=True)


@register_provider(PROVIDER_NAME)
def _replay_factory(options: Mapping[str, Any], env: Mapping[str, str]) -> ReplayProvider:
    # The replay provider is built from a thread's records, not from settings.
    raise ProviderError(
        PROVIDER_CONFIG_INVALID,
        "the replay provider answers from a thread's recorded answers and is not set with WF_PROVIDER: "
        "use wf replay, or the workflow's replay job in Dagster",
        option="provider",
    )


def replays(provider: object) -> bool:
    """Whether ``provider`` re-plays recorded answers (its ``replays`` attribute is true)."""
    return bool(getattr(provider, "replays", False))
