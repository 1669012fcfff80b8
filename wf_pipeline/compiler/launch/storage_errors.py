"""A full disk or an I/O error under the Dagster instance, as ``CODE: message``.

Dagster writes runs and events through its own SQLAlchemy storage (SQLite in
DAGSTER_HOME, or PostgreSQL); when that storage fails it raises the driver's error,
sometimes wrapped in its own. `instance_storage_errors` finds the storage failure in
the chain of causes and reports it as ``RUN_INSTANCE_STORAGE_ERROR`` with the reason
(the same judgement as the record store's: `wf_pipeline.records.connection.storage_failure`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
        reason = _storage_reason(exc)
        if reason is None:
            raise
        raise RunError(
            RUN_INSTANCE_STORAGE_ERROR,
            f"the Dagster instance in {settings.dagster_home} could not store the run: {reason}",
            dagster_home=str(settings.dagster_home),
            reason=reason,
        ) from exc


def _storage_reason(exc: BaseException) -> str | None:
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
