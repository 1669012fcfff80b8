"""Provider protocol and registry.

A provider turns one rendered prompt (plus the structured inputs it was rendered
from) into output text. Implementations register a factory under a name, the way
fsspec registers filesystems by protocol; callers build providers by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wf_pipeline.errors import ProviderError


@dataclass(frozen=True)
class ProviderRequest:
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


@dataclass(frozen=True)
class ProviderResponse:
    text: str
    provider_type: str
    model: str
    usage: Mapping[str, int] = field(default_factory=dict)


class Provider(Protocol):
    provider_type: str
    model: str

    def complete(self, request: ProviderRequest) -> ProviderResponse: ...


ProviderFactory = Callable[[Mapping[str, Any], Mapping[str, str]], Provider]
_FACTORIES: dict[str, ProviderFactory] = {}


def register_provider(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    def decorator(factory: ProviderFactory) -> ProviderFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def provider_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_provider(
    name: str, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Provider:
    """Build the provider registered as ``name`` with ``options`` and an environment for secrets."""
    _load_builtin()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ProviderError(
            "PROVIDER_UNKNOWN", f"no provider named {name!r} (known: {', '.join(sorted(_FACTORIES))})"
        ) from None
    return factory(dict(options or {}), {} if env is None else env)


def _load_builtin() -> None:
    from wf_pipeline.providers import offline, openai, simulated  # noqa: F401
