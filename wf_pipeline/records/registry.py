"""Which `RecordStore` a URL opens: a small registry of openers by URL scheme.

``memory://`` opens the in-memory store; ``sqlite://`` and ``postgresql://`` (with or
without a ``+driver``) open the SQL store; a backend registers an opener for its own
scheme with `register_record_store`.
"""

from __future__ import annotations

from collections.abc import Callable

from wf_pipeline.records.memory import MEMORY_SCHEME, open_memory_record_store
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.records.store import SqlRecordStore
from wf_pipeline.registry import Registry
from wf_pipeline.settings import Settings

RecordStoreOpener = Callable[..., RecordStore]

# Every scheme without an opener falls back to the SQL store, so a lookup never fails.
_OPENERS: Registry[str, RecordStoreOpener] = Registry(
    "record store opener", key="scheme", reregister="replace"
)
_OPENERS.register(MEMORY_SCHEME, open_memory_record_store)


def register_record_store(scheme: str, opener: RecordStoreOpener) -> None:
    """Make `open_record_store` call ``opener(url, schema=..., table_prefix=...)`` for ``<scheme>://`` URLs.

    A later registration for the same scheme replaces the earlier one.

    Args:
        scheme: the URL scheme without a ``+driver`` part, lower-case (``memory``).
        opener: builds the store from the URL, ``schema`` and ``table_prefix``.

    Raises nothing.
    """
    _OPENERS.register(scheme, opener)


def open_record_store(url: str, *, schema: str | None = None, table_prefix: str = "wf_") -> RecordStore:
    """Open the record store at ``url``.

    Args:
        url: ``memory://<name>``, ``sqlite:///<file>``, ``sqlite://`` or ``postgresql://...``.
        schema: PostgreSQL schema of the tables (``WF_RECORDS_SCHEMA``); None for the default.
        table_prefix: prefix of every table name.

    Returns the store for the URL's scheme, its tables migrated to the newest revision.
    Raises ``RECORD_BAD_URL``, ``RECORD_BAD_OPTION``, ``RECORD_UNAVAILABLE``,
    ``RECORD_SCHEMA_MISMATCH``.
    """
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    opener = _OPENERS.find(scheme)
    if opener is not None:
        return opener(url, schema=schema, table_prefix=table_prefix)
    return SqlRecordStore(url, schema=schema, table_prefix=table_prefix)


def open_settings_record_store(settings: Settings) -> RecordStore:
    """The record store ``settings`` name (``WF_RECORDS_URL``, ``WF_RECORDS_SCHEMA``), opened.

    A context manager like every store: ``with open_settings_record_store(settings) as records:``
    closes it on the way out. Raises as `open_record_store`.
    """
    return open_record_store(settings.records_url, schema=settings.records_schema)
