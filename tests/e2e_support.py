"""Shared set-up for end-to-end tests: an isolated WF_HOME and copies of real trees."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wf_pipeline.cas import ArtifactStore, open_cas
from wf_pipeline.crypto.open import open_keyring
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.records import open_record_store
from wf_pipeline.settings import SETTINGS_VARIABLES, Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_REPO = REPO_ROOT / "assets" / "sample_repo"

# Every variable the product reads, so a developer's exported settings never leak into tests.
WF_VARIABLES = (*SETTINGS_VARIABLES, "WF_CONFIG_DIR", "WF_MASTER_KEY", "WF_AUDIT_KEY")


def isolated_settings(monkeypatch, home: Path) -> Settings:
    for name in WF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WF_HOME", str(home))
    monkeypatch.setenv("WF_CONFIG_DIR", str(home / "user-config"))
    return Settings.from_env({"WF_HOME": str(home), "WF_CONFIG_DIR": str(home / "user-config")})


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return destination


@contextmanager
def home_store(home: Path, settings: Settings | None = None) -> Iterator[ArtifactStore]:
    """The CAS of the home ``home`` as the product reads it: sealed objects opened with its keyring.

    Objects rest encrypted (the docs writer's ``docs_family`` policy), so a test that checks
    what a run stored reads plaintexts through this, never the files under ``cas/objects``.
    ``settings``: the home's settings when its records are elsewhere (PostgreSQL); default:
    the embedded defaults of ``home``.
    """
    settings = settings or Settings.from_env({"WF_HOME": str(home)})
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    try:
        keyring = open_keyring(settings, records, required=False)
        with EncryptedArtifactStore(open_cas(settings.cas_url), EncryptionPolicy(), keyring) as store:
            yield store
    finally:
        records.close()


def cas_plaintexts(home: Path, settings: Settings | None = None) -> dict[str, bytes]:
    """Every artifact the home's CAS holds, opened and verified: id -> plaintext (``settings``: as `home_store`)."""
    with home_store(home, settings) as store:
        return {artifact_id: store.get(artifact_id) for artifact_id in store.iter_artifact_ids()}


WORKFLOW_ID = "docs_writer_thread_v1"
# A verification report that verifies nothing: the verification gate fails on it.
EMPTY_REPORT = json.dumps({"verified_claims": [], "rejected_claims": [], "reasons": {}})


def workspace_layer(parent: Path, name: str = "workspace") -> Path:
    """A workspace profile layer under ``parent``: the shipped profile and its prompt templates, to edit."""
    workspace = parent / name
    (workspace / "profiles").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "profiles" / f"{WORKFLOW_ID}.yaml", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    return workspace


class VerificationBreaker:
    """The offline provider; while ``broken``, verification verifies nothing (its gate fails)."""

    def __init__(self, broken: bool) -> None:
        self._inner = create_provider("offline")
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self.broken = broken
        self.calls: list[str] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls.append(request.turn_id)
        if self.broken and request.turn_id == "verification":
            return ProviderResponse(text=EMPTY_REPORT, provider_type="offline", model="offline-v1")
        return self._inner.complete(request)


def with_profile_keys(text: str, key: str, lines: str) -> str:
    """A profile's YAML ``text`` with ``lines`` (indented two spaces) added to its top-level ``key:`` mapping.

    The shipped profiles take ``retention``, ``encryption`` and ``redaction`` from their family
    base; a profile's own mapping merges over the base's key by key (docs/profiles.md), so a
    copy that sets a few keys writes just those. The block is created when the text has none.
    """
    header = f"\n{key}:\n"
    if header in text:
        return text.replace(header, header + lines, 1)
    return text.rstrip("\n") + header + lines
