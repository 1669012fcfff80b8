"""Homes with a master key for the key lifecycle tests: SQLite (embedded) or a fresh PostgreSQL database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2e_support import isolated_settings
from postgres_support import fresh_database, postgres_settings

from wf_pipeline.crypto.managers import new_master_key_text
from wf_pipeline.crypto.open import open_keyring
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.settings import Settings


@contextmanager
def keyed_home(kind: str, monkeypatch, home: Path) -> Iterator[Settings]:
    """Settings of a home whose master key is ``WF_MASTER_KEY`` and whose records are ``kind`` (sqlite, postgresql)."""
    key = new_master_key_text()
    if kind == "sqlite":
        isolated_settings(monkeypatch, home)
        monkeypatch.setenv("WF_MASTER_KEY", key)
        yield Settings.from_env(os.environ)
        return
    with fresh_database() as database:
        yield postgres_settings(monkeypatch, home, database, WF_MASTER_KEY=key)


@contextmanager
def opened(settings: Settings) -> Iterator[tuple[RecordStore, object]]:
    """The home's record store and keyring, as the key commands open them."""
    settings.ensure_dirs()
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    try:
        yield records, open_keyring(settings, records, required=True)
    finally:
        records.close()


def artifact_ids(count: int, prefix: str = "a") -> list[str]:
    """``count`` distinct, valid artifact ids (``sha256:<64 hex>``), sorted."""
    import hashlib

    return sorted("sha256:" + hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(count))
