"""Durable records: the `RecordStore` protocol and its stores.

`open_record_store` opens a store by URL: `SqlRecordStore` (SQLAlchemy Core; SQLite by
default, PostgreSQL by URL, tables migrated with alembic on open) or
`MemoryRecordStore` for ``memory://``.
"""

from wf_pipeline.records.memory import MemoryRecordStore
from wf_pipeline.records.protocol import RecordStore, ThreadLease, TurnCommit, merged_thread
from wf_pipeline.records.registry import open_record_store, open_settings_record_store, register_record_store
from wf_pipeline.records.store import SqlRecordStore

__all__ = [
    "MemoryRecordStore",
    "RecordStore",
    "SqlRecordStore",
    "ThreadLease",
    "TurnCommit",
    "merged_thread",
    "open_record_store",
    "open_settings_record_store",
    "register_record_store",
]
