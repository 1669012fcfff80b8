"""Retention: windows per profile and artifact class, tombstones, holds, and compaction of what nothing needs."""
