"""The embedded instance's event log: Dagster's SQLite storage, made fit for batched steps.

A batched turn step materializes one partition per target, hundreds per step. Dagster's
SQLite event log storage writes each of those events on its own (a new engine, the run
database, then the index database, a commit each), checks the schema on most queries,
and resolves a step's whole partition range again for every key it touches. This
storage keeps the same files and schema, so the UI, the daemon and `dagster instance
migrate` see an ordinary SQLite instance, and:

- writes a batch of asset events in one transaction per database, as dagster-postgres
  does (Dagster hands a step's materializations, and a run's planned events, over as
  one batch when the instance's event batch size is above zero: `WfDagsterInstance`);
- says that it takes a run's planned partitions as one event per asset (Dagster asks the
  storage, `supports_partition_subset_in_asset_materialization_planned_events`; its
  own storages answer from ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``), set by
  the ``emit_partition_subset_in_planned_events`` config field, on by default;
- keeps one engine and one pooled connection per database file instead of creating
  both per statement;
- remembers schema facts once they hold (migrations add tables and columns, never drop);
- serves partition lookups from one read inside `dynamic_partitions_snapshot`;
- reads planned partition subsets back per partition, so that the partitions a failed run
  planned and never materialized are listed as failed (and those of a running run as in
  progress), as with one planned event per partition.
"""

from __future__ import annotations

import contextvars
import functools
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster import AssetKey, DagsterEventType, DagsterInstance, Field, StringSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite import sqlite_event_log as sqlite_event_log_module
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine, get_alembic_config, run_alembic_upgrade
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData, deserialize_value
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

# What Dagster batches: a step's per-partition asset events and a run's planned events.
_BATCHED_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
)

# Engines kept at once: the index plus the run databases being written or watched.
_ENGINE_CACHE_SIZE = 16

# partitions definition name -> (keys in order, the same keys as a set), while a snapshot is active.
_snapshot: contextvars.ContextVar[dict[str, tuple[list[str], frozenset[str]]] | None] = (
    contextvars.ContextVar("wf_dynamic_partitions_snapshot", default=None)
)


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage with batched asset events and reused engines."""

    def __init__(
        self,
        base_dir: str,
        inst_data: ConfigurableClassData | None = None,
        emit_partition_subset_in_planned_events: bool = True,
    ) -> None:
        self._emit_partition_subsets = emit_partition_subset_in_planned_events
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._schema_facts: set[tuple[str, str]] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> BatchedSqliteEventLogStorage:
        """Build the storage from its ``dagster.yaml`` config (Dagster's `ConfigurableClass` hook)."""
        return cls(inst_data=inst_data, **config_value)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        """The config schema: ``base_dir`` and ``emit_partition_subset_in_planned_events`` (default True)."""
        return {
            "base_dir": StringSource,
            "emit_partition_subset_in_planned_events": Field(bool, is_required=False, default_value=True),
        }

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        """Whether a run's planned partitions are written as one event per asset (Dagster asks the storage)."""
        # A level run covers hundreds of partitions: one planned event per asset and run,
        # not one per partition. The failed and in-progress partitions still come out per partition
        # (`get_latest_asset_partition_materialization_attempts_without_materializations`).
        return self._emit_partition_subsets

    def get_latest_asset_partition_materialization_attempts_without_materializations(
        self, asset_key: AssetKey, after_storage_id: int | None = None
    ) -> Mapping[str, tuple[str, int]]:
        """Partition -> (run id, planned event id) of the latest planned materialization not followed by one.

        Dagster's query groups planned events by their partition column, which is empty for a
        planned event that carries a partition subset (how this storage plans a run); its
        partitions would never read as failed or in progress. Here such events count for each
        partition of their subset, the latest planned event of a partition wins, and one
        followed by a materialization of that partition is done. Dagster's asset status cache
        reads this to list a failed run's unmaterialized partitions as failed.
        """
        attempts = dict(
            super().get_latest_asset_partition_materialization_attempts_without_materializations(
                asset_key, after_storage_id=after_storage_id
            )
        )
        table = SqlEventLogStorageTable
        query = select(table.c.id, table.c.run_id, table.c.event).where(
            table.c.asset_key == asset_key.to_string(),
            table.c.partition.is_(None),
            table.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
        )
        if after_storage_id is not None:
            query = query.where(table.c.id > after_storage_id)
        with self.index_connection() as conn:
            rows = conn.execute(query.order_by(table.c.id)).fetchall()
        planned: dict[str, tuple[str, int]] = {}
        for event_id, run_id, body in rows:
            entry = deserialize_value(body, EventLogEntry)
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            subset = getattr(data, "partitions_subset", None)
            for partition in subset.get_partition_keys() if subset is not None else ():
                planned[partition] = (run_id, event_id)  # rows come oldest first: the latest wins
        if not planned:
            return attempts
        materialized = self._latest_event_ids_by_partition_subquery(
            asset_key, [DagsterEventType.ASSET_MATERIALIZATION], after_cursor=after_storage_id
        )
        with self.index_connection() as conn:
            latest_materialization = {
                row.partition: row.id
                for row in conn.execute(select(materialized.c.partition, materialized.c.id))
            }
        for partition, (run_id, event_id) in planned.items():
            if latest_materialization.get(partition, -1) > event_id:
                continue
            if partition not in attempts or attempts[partition][1] < event_id:
                attempts[partition] = (run_id, event_id)
        return attempts

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                # One pooled connection per database: Dagster's storage serializes its
                # statements (`_db_lock`), and opening a SQLite connection per statement
                # costs more than most statements. An idle connection holds no lock, so the
                # UI and the daemon read and write these files as before.
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=QueuePool,
                    pool_size=1,
                    max_overflow=2,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
            self._engines[shard] = engine
            while len(self._engines) > _ENGINE_CACHE_SIZE:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        if for_index_shard or not _set_up_run_database(engine):
            super()._initdb(engine, for_index_shard=for_index_shard)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """One batch of a run's asset events: one transaction on the run database, one on the index."""
        if len({event.run_id for event in events}) != 1 or any(
            event.dagster_event_type not in _BATCHED_TYPES for event in events
        ):
            super().store_event_batch(events)
            return
        run_id = events[0].run_id
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
            stored = list(zip(events, self._last_event_ids(conn, run_id, len(rows)), strict=True))
            asset_events = [(e, i) for e, i in stored if e.dagster_event_type in ASSET_EVENTS]
            self._store_asset_event_tags(conn, [e for e, _ in asset_events], [i for _, i in asset_events])
            # An asset's row keeps only its latest event of each kind: write the last of each.
            latest = {(e.dagster_event.asset_key, e.dagster_event_type): (e, i) for e, i in asset_events}
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)
        for event, event_id in stored:
            if event.dagster_event_type in ASSET_CHECK_EVENTS:  # these open their own connection
                self.store_asset_check_event(event, event_id)

    @staticmethod
    def _last_event_ids(conn: Connection, run_id: str, count: int) -> list[int]:
        """Ids of the ``count`` rows this transaction just inserted for ``run_id``, oldest first.

        The transaction holds SQLite's write lock since its insert, so the run's newest
        rows are exactly those.
        """
        table = SqlEventLogStorageTable
        query = select(table.c.id).where(table.c.run_id == run_id).order_by(table.c.id.desc()).limit(count)
        return sorted(row[0] for row in conn.execute(query))

    # Schema checks. Dagster asks on most queries whether a table, a column or a data
    # migration exists; all only ever appear (through migrations), so a yes is kept and a
    # no is asked again.
    def has_table(self, table_name: str) -> bool:
        """Whether the index database has ``table_name``; a yes is remembered, a no is asked again."""
        return self._schema_fact(
            ("table", table_name), lambda: SqliteEventLogStorage.has_table(self, table_name)
        )

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        return self._schema_fact(
            ("asset_key_column", column_name),
            lambda: SqliteEventLogStorage._has_asset_key_col_on_connection(self, conn, column_name),
        )

    def has_secondary_index(self, name: str) -> bool:
        """Whether the data migration ``name`` has run; a yes is remembered, a no is asked again."""
        return self._schema_fact(
            ("index", name), lambda: SqliteEventLogStorage.has_secondary_index(self, name)
        )

    def _schema_fact(self, fact: tuple[str, str], check: Callable[[], bool]) -> bool:
        if fact in self._schema_facts:
            return True
        present = check()
        if present:
            self._schema_facts.add(fact)
        return present

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        """The keys of a dynamic partitions definition, in order; from the active snapshot when one is."""
        snapshot = (_snapshot.get() or {}).get(partitions_def_name)
        if snapshot is not None:
            return list(snapshot[0])
        return super().get_dynamic_partitions(partitions_def_name)

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        """Whether ``partition_key`` is a key of the definition; from the active snapshot when one is."""
        snapshot = (_snapshot.get() or {}).get(partitions_def_name)
        if snapshot is not None:
            return partition_key in snapshot[1]
        return super().has_dynamic_partition(partitions_def_name, partition_key)

    def upgrade(self) -> None:
        """Migrate every run database and the index database to Dagster's current schema.

        The same migrations as `SqliteEventLogStorage.upgrade`, which also prints its
        progress to stdout (and a tqdm bar to stderr); here nothing reaches the terminal,
        so ``wf ... --json`` output stays clean without redirecting the process's streams.
        """
        alembic_config = get_alembic_config(sqlite_event_log_module.__file__)
        for run_id in self.get_all_run_ids():
            with self.run_connection(run_id) as conn:
                run_alembic_upgrade(alembic_config, conn, run_id)
        with self.index_connection() as conn:
            run_alembic_upgrade(alembic_config, conn, "index")
        self._initialized_dbs = set()

    def wipe(self) -> None:
        """Close the kept engines, then delete every event as `SqliteEventLogStorage.wipe` does."""
        self._dispose_engines()  # wiping deletes the run databases: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        """Close the kept engines, then dispose as `SqliteEventLogStorage.dispose` does."""
        self._dispose_engines()
        super().dispose()

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def _set_up_run_database(engine: Engine) -> bool:
    """Make sure a run's database exists as Dagster makes it (tables, WAL, the alembic head stamp).

    Dagster's set-up reads every migration script again for each run database it opens,
    about a tenth of a second each; here they are read once per process. An already
    stamped database is left alone, as Dagster leaves it. False when another process is
    setting the database up at the same moment: Dagster's set-up, which retries, takes over.
    """
    try:
        with engine.connect() as conn:
            migrations = MigrationContext.configure(conn)
            if migrations.get_current_revision() is not None:
                return True
            SqlEventLogStorageMetadata.create_all(engine)
            conn.execute(text("PRAGMA journal_mode=WAL;"))
            migrations.stamp(_migration_scripts(), "head")
            conn.commit()
    except (DBAPIError, sqlite3.Error):
        return False
    return True


@functools.cache
def _migration_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(get_alembic_config(sqlite_event_log_module.__file__))


@contextmanager
def dynamic_partitions_snapshot(instance: DagsterInstance, partitions_def_name: str) -> Iterator[None]:
    """Within the block, this context's partition lookups of ``partitions_def_name`` read one snapshot.

    For code that checks many keys it already knows exist, such as per-partition metadata
    of a step (Dagster resolves the step's whole range again for every key). Other
    threads and processes are unaffected. Does nothing on other storages.
    """
    storage = instance.event_log_storage
    if not isinstance(storage, BatchedSqliteEventLogStorage):
        yield
        return
    keys = list(storage.get_dynamic_partitions(partitions_def_name))
    current = _snapshot.get() or {}
    token = _snapshot.set({**current, partitions_def_name: (keys, frozenset(keys))})
    try:
        yield
    finally:
        _snapshot.reset(token)


__all__ = ["BatchedSqliteEventLogStorage", "dynamic_partitions_snapshot"]
