"""A full disk or an I/O error under the Dagster instance, as ``CODE: message``.

Dagster writes runs and events through its own SQLAlchemy storage (SQLite in
DAGSTER_HOME, or PostgreSQL); when that storage fails it raises the driver's error,
sometimes wrapped in its own. `instance_storage_errors` finds the storage failure in
the chain of causes and reports it as ``RUN_INSTANCE_STORAGE_ERROR`` with the reason
(the same judgement as the record store's: `wf_pipeline.records.connection.storage_failure`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from wf_pipeline.errors import RUN_INSTANCE_STORAGE_ERROR, RunError, WfError, os_reason
from wf_pipeline.records.connection import storage_failure
from wf_pipeline.settings import Settings


@contextmanager
def instance_storage_errors(settings: Settings) -> Iterator[None]:
    """Turn a storage failure of the Dagster instance inside the block into ``RUN_INSTANCE_STORAGE_ERROR``.

    Args:
        settings: names the Dagster home, for the message.

    Raises:
        RunError: ``RUN_INSTANCE_STORAGE_ERROR`` (figures: the Dagster home, the reason,
            e.g. "database or disk is full" or "No space left on device (ENOSPC)").
            Any other exception, and every `WfError`, propagates unchanged.
    """
    try:
        yield
    except WfError:
        raise
    except Exception as exc:
        reason = storage_reason(exc)
        if reason is None:
            raise
        reason += _full_disk_note(settings.dagster_home)
        raise RunError(
            RUN_INSTANCE_STORAGE_ERROR,
            f"the Dagster instance in {settings.dagster_home} could not store the run: {reason}",
            dagster_home=str(settings.dagster_home),
            reason=reason,
        ) from exc


# Below this many free bytes, SQLite's "disk I/O error" is the file system being full.
_NEARLY_FULL_BYTES = 1 << 20


def _full_disk_note(directory: Path) -> str:
    # SQLite reports a write that found no space as "disk I/O error" when the journal or
    # the WAL could not grow: the free space of the file system names the cause.
    existing = next((folder for folder in (directory, *directory.parents) if folder.exists()), directory)
    try:
        stats = os.statvfs(existing)
    except OSError:
        return ""
    free = stats.f_bavail * stats.f_frsize
    if free >= _NEARLY_FULL_BYTES:
        return ""
    return f" (its file system is full: {free} bytes free; No space left on device, ENOSPC)"


def storage_reason(exc: BaseException) -> str | None:
    """The storage reason in ``exc``'s chain of causes (driver or OS failure), else None.

    Args:
        exc: any exception Dagster or its storage raised.

    Returns:
        `wf_pipeline.records.connection.storage_failure`'s text for a driver error,
        `wf_pipeline.errors.os_reason` for an OS error with an errno, else None.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError):
            return storage_failure(current)
        if isinstance(current, OSError) and current.errno is not None:
            return os_reason(current)
        current = current.__cause__ or current.__context__
    return None
