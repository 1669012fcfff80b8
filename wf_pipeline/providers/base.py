"""Provider protocol and registry.

A provider turns one rendered prompt (plus the structured inputs it was rendered
from) into output text. Implementations register a factory under a name, the way
fsspec registers filesystems by protocol; callers build providers by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wf_pipeline.errors import PROVIDER_UNKNOWN
from wf_pipeline.registry import Registry


@dataclass(frozen=True)
class ProviderRequest:
    """One call to a provider: ids, the rendered prompts and the raw inputs, never stored here.

    ``timeout_ms`` is the time this call may take: the runtime sets it to what is left
    of the turn's deadline (``timeout_ms`` of the turn, for all attempts and waits), so
    an HTTP provider bounds its request by it. The runtime enforces the deadline itself
    too (`wf_pipeline.providers.retry.call_within`), for providers that cannot.
    """

    workflow_id: str
    thread_id: str
    turn_id: str
    output_type: str
    output_format: str  # "json" or "markdown"
    system_prompt: str
    user_prompt: str
    # Raw text of each input, keyed by input_ref ("context" is the context payload JSON).
    inputs: Mapping[str, str]
    timeout_ms: int = 120_000
    # The profile's artifact_policy.max_output_bytes: a provider that can size its output
    # (the offline turns) keeps within it; None when the caller sets no limit.
    max_output_bytes: int | None = None
    # The request's canonical digest (`wf_pipeline.runtime.requests.request_digest`): the
    # key recorded answers are found by; "" when the caller records none.
    request_digest: str = ""


@dataclass(frozen=True)
class ProviderResponse:
    """A provider's answer: the output text, who produced it, and token counts if the server gave them."""

    text: str
    provider_type: str
    model: str
    usage: Mapping[str, int] = field(default_factory=dict)


class Provider(Protocol):
    """What the runtime calls. ``complete`` may be called from several threads at once.

    ``complete`` returns a `ProviderResponse` or raises a `ProviderError` whose code's
    ``retryable`` flag in the error catalogue tells the runtime whether to try again.
    A provider that holds resources (connections) also has ``close()``; callers release
    it through `close_provider`.
    """

    provider_type: str
    model: str
    # Optional: a provider whose ``deterministic`` attribute is true answers the same
    # request with the same output every time, so an error judged on its output
    # (`wf_pipeline.providers.retry.repeats_on_retry`) is not retried. Absent means false.

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Answer one request within ``request.timeout_ms``.

        Args:
            request: the rendered prompts, the raw inputs and the call's time budget in ms.

        Returns:
            The `ProviderResponse`: output text, provider type, model, token counts.

        Raises:
            ProviderError: a ``PROVIDER_*`` code of the catalogue (``PROVIDER_TIMEOUT``,
                ``PROVIDER_RATE_LIMITED``, ``PROVIDER_BAD_RESPONSE``...); its ``retryable``
                flag tells the runtime whether to try again.
        """
        ...


def close_provider(provider: object) -> None:
    """Release what ``provider`` holds (a connection pool) if it has a ``close()``; idempotent."""
    close = getattr(provider, "close", None)
    if callable(close):
        close()


ProviderFactory = Callable[[Mapping[str, Any], Mapping[str, str]], Provider]
# A later registration under a name replaces the earlier one (a test or a deployment may override).
_FACTORIES: Registry[str, ProviderFactory] = Registry(
    "provider", key="name", unknown=PROVIDER_UNKNOWN, reregister="replace"
)


def register_provider(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Decorator: register ``factory(options, env)`` as the provider called ``name``.

    A later registration under ``name`` replaces the earlier one.

    Args:
        name: the name settings and profiles use (``WF_PROVIDER``).

    Returns:
        A decorator that registers a `ProviderFactory` and returns it unchanged. Raises nothing.
    """

    def decorator(factory: ProviderFactory) -> ProviderFactory:
        return _FACTORIES.register(name, factory)

    return decorator


def provider_names() -> list[str]:
    """Names of every registered provider, sorted."""
    _load_builtin()
    return _FACTORIES.keys()


def create_provider(
    name: str, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Provider:
    """Build the provider registered as ``name`` with ``options`` and an environment for secrets.

    Raises:
        ProviderError: ``PROVIDER_UNKNOWN`` (with the known names) when no provider has that name; the factory's
            own codes (``PROVIDER_CONFIG_INVALID``, ``PROVIDER_MISSING_KEY``) for bad options.
    """
    _load_builtin()
    factory = _FACTORIES.get(name)
    return factory(dict(options or {}), {} if env is None else env)


def _load_builtin() -> None:
    from wf_pipeline.providers import offline, openai, replay, simulated  # noqa: F401
