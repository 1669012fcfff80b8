"""Model providers behind one protocol."""

from wf_pipeline.providers.base import (
    Provider,
    ProviderRequest,
    ProviderResponse,
    create_provider,
    provider_names,
    register_provider,
)

__all__ = [
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "create_provider",
    "provider_names",
    "register_provider",
]
