"""The offline provider: deterministic, model-free output, dispatched by output type.

It ignores the prompt. Each workflow registers an offline turn per output type it
produces (see ``register_offline_turn``); an offline turn derives the output from the
request's structured inputs alone. Same inputs, same bytes out.

The helpers ``raw_input`` and ``parsed_input`` give offline turns the request's inputs
with the provider's error codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from wf_pipeline.errors import (
    PROVIDER_DUPLICATE_OUTPUT,
    PROVIDER_INPUT_INVALID,
    PROVIDER_INPUT_MISSING,
    PROVIDER_UNSUPPORTED_OUTPUT,
    MetadataError,
    ProviderError,
)
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import StrictPayload, parse_json_output
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider
from wf_pipeline.registry import Registry

PROVIDER_TYPE = "offline"
MODEL = "offline-v1"

OfflineTurn = Callable[[ProviderRequest], str]
_ModelT = TypeVar("_ModelT", bound=StrictPayload)
_TURNS: Registry[str, OfflineTurn] = Registry(
    "offline turn",
    key="output type",
    duplicate=PROVIDER_DUPLICATE_OUTPUT,
    unknown=PROVIDER_UNSUPPORTED_OUTPUT,
)


def register_offline_turn(output_type: str, turn: OfflineTurn) -> None:
    """Make the offline provider answer requests for ``output_type`` with ``turn(request)``.

    Registering the same function again is a no-op.

    Args:
        output_type: a turn's output type, as profiles declare it.
        turn: takes the `ProviderRequest` and returns the output text; raises
            ProviderError for bad inputs (``PROVIDER_INPUT_MISSING``,
            ``PROVIDER_INPUT_INVALID``: see `raw_input`, `parsed_input`).

    Raises:
        ProviderError: ``PROVIDER_DUPLICATE_OUTPUT`` when another function already serves
            ``output_type``.
    """
    _TURNS.register(output_type, turn)


def json_text(model: BaseModel) -> str:
    """The canonical JSON text of a payload (aliases, no None fields, sorted keys, no spaces)."""
    return canonical_json(model.model_dump(mode="json", by_alias=True, exclude_none=True)).decode()


def raw_input(request: ProviderRequest, ref: str) -> str:
    """The raw text of input ``ref``. Raises ProviderError PROVIDER_INPUT_MISSING when absent."""
    try:
        return request.inputs[ref]
    except KeyError:
        raise ProviderError(
            PROVIDER_INPUT_MISSING,
            f"turn {request.turn_id} of thread {request.thread_id} needs input {ref!r}",
            turn_id=request.turn_id,
            input_ref=ref,
        ) from None


def parsed_input(request: ProviderRequest, ref: str, model: type[_ModelT]) -> _ModelT:
    """Input ``ref`` parsed strictly as ``model``.

    Raises ProviderError PROVIDER_INPUT_MISSING, or PROVIDER_INPUT_INVALID (with the
    parse error's code as ``cause``).
    """
    try:
        return parse_json_output(raw_input(request, ref), model)
    except MetadataError as exc:
        raise ProviderError(
            PROVIDER_INPUT_INVALID,
            f"input {ref!r} of turn {request.turn_id} is not a valid {model.__name__} ({exc.code})",
            turn_id=request.turn_id,
            input_ref=ref,
            cause=exc.code,
        ) from None


class OfflineProvider:
    """Answers each request with the offline turn registered for its output type."""

    provider_type = PROVIDER_TYPE
    model = MODEL
    # Pure computation on the request's inputs: it cannot block past the turn's deadline.
    returns_by_deadline = True
    # The same request always gives the same output: an output error would repeat.
    deterministic = True

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """The registered turn's output for ``request``.

        Args:
            request: the call; its ``output_type`` picks the offline turn.

        Returns:
            The turn's output text as a `ProviderResponse` of this provider and model.

        Raises:
            ProviderError: ``PROVIDER_UNSUPPORTED_OUTPUT`` (with the ``output_type``, the
                ``known`` output types and the ``turn_id`` in its details) when no loaded
                workflow registered a turn for ``request.output_type``; whatever the turn
                raises.
        """
        produce = _TURNS.get(request.output_type, turn_id=request.turn_id)
        return ProviderResponse(text=produce(request), provider_type=self.provider_type, model=self.model)


@register_provider(PROVIDER_TYPE)
def offline_provider(options: Mapping[str, Any], env: Mapping[str, str]) -> OfflineProvider:
    """Build the offline provider; it takes no options and reads no environment."""
    return OfflineProvider()
