"""Everything one turn needs, opened once from settings and passed down explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.cas import CasStore, open_cas
from wf_pipeline.config import Settings
from wf_pipeline.errors import ConfigError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, Budgets
from wf_pipeline.profiles import ProfileCatalog, default_layers, load_catalog
from wf_pipeline.providers import Provider, create_provider
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.settings import provider_options


@dataclass(frozen=True)
class RuntimeEnv:
    settings: Settings
    cas: CasStore
    records: RecordStore
    catalog: ProfileCatalog
    provider: Provider
    boundary: FrameMetadataBoundary
    budgets: Budgets

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        workspace_dir: Path | None = None,
        catalog: ProfileCatalog | None = None,
        provider: Provider | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RuntimeEnv:
        settings.ensure_dirs()
        cas = open_cas(settings.cas_url)
        if catalog is None:
            catalog = load_catalog(
                default_layers(settings, workspace_dir or Path.cwd()), artifact_reader=cas.get
            )
        budgets = Budgets()
        return cls(
            settings=settings,
            cas=cas,
            records=open_record_store(settings.records_url, schema=settings.records_schema),
            catalog=catalog,
            provider=provider or provider_from_settings(settings, env),
            boundary=FrameMetadataBoundary(FRAME_KEY_REGISTRY, budgets),
            budgets=budgets,
        )


def provider_from_settings(settings: Settings, env: Mapping[str, str] | None = None) -> Provider:
    """The provider ``settings`` name; ``env`` (default: the settings' own) gives options and secrets."""
    if not settings.provider:
        raise ConfigError("CONFIG_PROVIDER_MISSING", "WF_PROVIDER is empty")
    if env is None:
        return create_provider(settings.provider, settings.provider_options, settings.secrets)
    return create_provider(settings.provider, provider_options(settings.provider, env), env)
