"""Durable record store (SQLAlchemy Core): SQLite by default, PostgreSQL by URL."""

from wf_pipeline.records.store import RecordStore, TurnCommit, open_record_store

__all__ = ["RecordStore", "TurnCommit", "open_record_store"]
